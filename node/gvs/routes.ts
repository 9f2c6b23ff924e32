// GVS's HTTP API: /v1/volumes (create, list by path prefix, info, resize, rename,
// destroy, repair). Writes answer once the change is in the document on disk; the
// data path (NBD, replication) reads the document as it is.
import type { FastifyInstance } from 'fastify'
import type { Snapshot, Volume, Writer } from '../../crdt/index.ts'
import { NotFoundError, ValidationError } from '../errors.ts'
import { checkDestroy, findVolume, planClone, planCreate, planRename, planResize, planSnapshot, type CreateRequest } from './volumes.ts'
import type { Reader } from '../../crdt/index.ts'
import type { Pool } from './volumes.ts'
import type { RepairReport } from './repair.ts'

export interface VolumeView {
  id: string
  path: string
  sizeBytes: number
  replicas: number
  minReplicas: number
  thin: boolean
  epoch: number
  state: Volume['state']
  parent: string | null
  snapshots: Array<{ name: string, createdAt: string, nbd: string }>
  /** open it with qemu-img, nbdinfo, nbdcopy or QEMU on this node */
  nbd: string
  lastRepair: { at: string, copied: number, failed: number, bytes: number, health: string } | null
}

interface IdParams { id: string }
const idParams = { type: 'object', properties: { id: { type: 'string', minLength: 1, maxLength: 2100 } }, required: ['id'] }

/** What the routes use of the GVS service (a narrow view, so the service and its routes do not import each other). */
export interface GvsRoutesDeps {
  readonly components: { state: { read: () => Reader, write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T> } }
  readonly repairs: ReadonlyMap<string, RepairReport>
  readonly store: { removeVolume: (volume: string) => Promise<unknown> }
  volumes: () => Volume[]
  pool: () => Pool
  repair: (v: Volume) => Promise<RepairReport>
  uriOf: (v: Volume) => string
}

export function gvsRoutes (svc: GvsRoutesDeps) {
  const { state } = svc.components
  const repairedAt = new Map<string, number>()
  const view = (v: Volume): VolumeView => {
    const r = svc.repairs.get(v.id)
    return {
      id: v.id,
      path: v.path,
      sizeBytes: v.sizeBytes,
      replicas: v.replicas,
      minReplicas: v.minReplicas ?? v.replicas,
      thin: v.thin !== false,
      epoch: v.epoch ?? 1,
      state: v.state,
      parent: v.parent,
      snapshots: Object.values(v.snapshots).sort((a, b) => a.createdAt - b.createdAt)
        .map(s => ({ name: s.name, createdAt: new Date(s.createdAt).toISOString(), nbd: svc.uriOf(v).replace(/\?socket=/, `@${s.name}?socket=`) })),
      nbd: svc.uriOf(v),
      lastRepair: r == null ? null : { at: new Date(repairedAt.get(v.id) ?? 0).toISOString(), copied: r.done - r.failed, failed: r.failed, bytes: r.bytes, health: r.health }
    }
  }
  const body = (b: unknown): Record<string, unknown> => {
    if (b == null || typeof b !== 'object' || Array.isArray(b)) throw new ValidationError('body', 'the request body must be a JSON object')
    return b as Record<string, unknown>
  }

  return (app: FastifyInstance): void => {
    app.get<{ Querystring: { prefix?: string } }>('/v1/volumes', async req => {
      const prefix = req.query.prefix ?? '/'
      const vs = svc.volumes().filter(v => v.path === prefix || v.path.startsWith(prefix.endsWith('/') ? prefix : prefix + '/'))
      return { volumes: vs.sort((a, b) => a.path.localeCompare(b.path)).map(view) }
    })

    app.post('/v1/volumes', async (req, reply): Promise<VolumeView> => {
      const b = body(req.body)
      // with "from": a clone of a snapshot, in constant time
      const draft = b.from != null ? planClone(b, svc.volumes()) : planCreate(b as CreateRequest, svc.volumes(), svc.pool())
      const v = await state.write(w => w.put('volumes', draft), `volume create ${draft.path}`)
      void reply.code(201)
      return view(v)
    })

    app.get<{ Params: IdParams }>('/v1/volumes/:id', { schema: { params: idParams } }, async req => view(findVolume(svc.volumes(), req.params.id)))

    app.patch<{ Params: IdParams }>('/v1/volumes/:id', { schema: { params: idParams } }, async req => {
      const b = body(req.body)
      const v = findVolume(svc.volumes(), req.params.id)
      const patch: Partial<Volume> = {}
      if (b.size != null) patch.sizeBytes = planResize(v, b.size, svc.pool())
      if (b.path != null) patch.path = planRename(v, b.path, svc.volumes())
      if (Object.keys(patch).length === 0) throw new ValidationError('body', 'nothing to change: give size (grow) or path (rename)')
      return view(await state.write(w => w.update('volumes', v.id, patch), `volume change ${v.path}`))
    })

    app.delete<{ Params: IdParams }>('/v1/volumes/:id', { schema: { params: idParams } }, async req => {
      const v = findVolume(svc.volumes(), req.params.id)
      checkDestroy(v, state.read().list('vms'))
      await state.write(w => w.remove('volumes', v.id), `volume rm ${v.path}`)
      // this node's copies go now; the others free theirs when they see it gone
      await svc.store.removeVolume(v.id)
      return { removed: v.id, path: v.path }
    })

    /** snapshots of several volumes in one change of the document: one consistent cut */
    const snapshot = (w: Writer, vs: Volume[], name: unknown, now: number): void => {
      for (const v of vs) {
        const plan = planSnapshot(v, name, now)
        w.update('volumes', v.id, { layers: plan.layers })
        w.addSnapshot(v.id, plan.snapshot as Pick<Snapshot, 'name' | 'createdAt'>)
      }
    }

    app.post<{ Params: IdParams }>('/v1/volumes/:id/snapshots', { schema: { params: idParams } }, async (req, reply) => {
      const b = body(req.body)
      const v = findVolume(svc.volumes(), req.params.id)
      await state.write(w => { snapshot(w, [v], b.name, Date.now()) }, `volume snapshot ${v.path}@${String(b.name)}`)
      void reply.code(201)
      return view(findVolume(svc.volumes(), v.id))
    })

    app.post('/v1/snapshots', async (req, reply) => {
      const b = body(req.body)
      if (!Array.isArray(b.volumes) || b.volumes.length === 0 || b.volumes.length > 256) throw new ValidationError('volumes', 'volumes must list 1-256 volume paths or ids')
      const all = svc.volumes()
      const vs = (b.volumes as unknown[]).map(x => findVolume(all, String(x)))
      if (new Set(vs.map(v => v.id)).size !== vs.length) throw new ValidationError('volumes', 'a volume is listed twice')
      await state.write(w => { snapshot(w, vs, b.name, Date.now()) }, `volume set snapshot @${String(b.name)}`)
      void reply.code(201)
      return { snapshot: b.name, volumes: vs.map(v => view(findVolume(svc.volumes(), v.id))) }
    })

    app.delete<{ Params: IdParams & { name: string } }>('/v1/volumes/:id/snapshots/:name', async req => {
      const v = findVolume(svc.volumes(), req.params.id)
      if (v.snapshots[req.params.name] == null) throw new NotFoundError(`volume "${v.path}" has no snapshot "${req.params.name}"`)
      const rest = Object.fromEntries(Object.entries(v.snapshots).filter(([k]) => k !== req.params.name))
      // the snapshot's layers stay while the volume or a clone still reads through them
      await state.write(w => w.update('volumes', v.id, { snapshots: rest }), `volume snapshot rm ${v.path}@${req.params.name}`)
      return view(findVolume(svc.volumes(), v.id))
    })

    app.post<{ Params: IdParams }>('/v1/volumes/:id/repair', { schema: { params: idParams } }, async (req): Promise<{ volume: string } & Omit<RepairReport, 'plan'> & { lost: number[] }> => {
      const v = findVolume(svc.volumes(), req.params.id)
      const r = await svc.repair(v)
      repairedAt.set(v.id, Date.now())
      return { volume: v.path, done: r.done, total: r.total, bytes: r.bytes, failed: r.failed, health: r.health, errors: r.errors, lost: r.plan.lost }
    })
  }
}
