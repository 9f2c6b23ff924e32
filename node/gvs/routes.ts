// GVS's HTTP API: /v1/volumes (create, list by path prefix, info, resize, rename,
// destroy, repair). Writes answer once the change is in the document on disk; the
// data path (NBD, replication) reads the document as it is.
import type { FastifyInstance } from 'fastify'
import type { Volume } from '../../crdt/index.ts'
import { ValidationError } from '../errors.ts'
import { checkDestroy, findVolume, planCreate, planRename, planResize, type CreateRequest } from './volumes.ts'
import type { GvsService } from './service.ts'
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
  snapshots: string[]
  /** open it with qemu-img, nbdinfo, nbdcopy or QEMU on this node */
  nbd: string
  lastRepair: { at: string, copied: number, failed: number, bytes: number, health: string } | null
}

interface IdParams { id: string }
const idParams = { type: 'object', properties: { id: { type: 'string', minLength: 1, maxLength: 2100 } }, required: ['id'] }

export function gvsRoutes (svc: GvsService) {
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
      snapshots: Object.keys(v.snapshots).sort(),
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
      const draft = planCreate(body(req.body) as CreateRequest, svc.volumes(), svc.pool())
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

    app.post<{ Params: IdParams }>('/v1/volumes/:id/repair', { schema: { params: idParams } }, async (req): Promise<{ volume: string } & Omit<RepairReport, 'plan'> & { lost: number[] }> => {
      const v = findVolume(svc.volumes(), req.params.id)
      const r = await svc.repair(v)
      repairedAt.set(v.id, Date.now())
      return { volume: v.path, done: r.done, total: r.total, bytes: r.bytes, failed: r.failed, health: r.health, errors: r.errors, lost: r.plan.lost }
    })
  }
}
