// GVS's HTTP API: /v1/volumes (create, list by path prefix, info, resize, rename,
// destroy, snapshots, repair) and /v1/gvs/scrub. Writes answer once the change is in
// the document on disk; the data path (NBD, replication) reads the document as it is.
// A volume's `health` (healthy, degraded, repairing, with reasons and the repair's
// progress) is computed when asked: see health.ts and GvsService.health.
import type { FastifyInstance } from 'fastify'
import { randomBytes } from 'node:crypto'
import { snapshotOf, type Draft, type Vm, type Volume, type Writer } from '../../crdt/index.ts'
import { ConflictError, NotFoundError, UnavailableError, ValidationError, booleanQuery, bodyObject, flag, onlyFields, optionalBody, quoteGiven } from '../errors.ts'
import { checkDestroy, checkSnapshotsGo, overProvisioned, volumeUse, cloneSource, checkPath, checkSize, checkRename, findVolume, stillThere, layerNumber, lostPath, planClone, planCreate, planRename, planResize, planSnapshot, layersOf, referencedLayers, sayLayers, sayNodes, MAX_LAYERS, snapshotSize, volumeUsers, type CreateRequest } from './volumes.ts'
import type { Reader } from '../../crdt/index.ts'
import type { Pool } from './volumes.ts'
import type { RepairReport } from './repair.ts'
import type { LastRepair, RepairProgressView, VolumeHealthView } from './health.ts'
import { scrubOfVolume, type ScrubReport } from './scrub.ts'
import type { ScrubStatus } from './scrub-schedule.ts'
import { foldingLayers, layerReaders, layerUses, type LayerUses } from './layer-reclaim.ts'
import { placedOn } from './write-intervals.ts'
import type { NodeWriters } from './say-writers.ts'
import { exportRecordOf, exportSnapshotName, type ExportFate, type ExportRecord } from './export-holds.ts'

/** who uses a volume: VMs that name it as a disk (running: runs or should), NBD writer sessions by node */
export interface VolumeUsersView {
  volume: string
  path: string
  /** `running`: it may run (for the checks of rm and import); `state`: what it does now (volumeUse) */
  vms: Array<{ id: string, name: string, desired: string, running: boolean, state?: string }>
  /** runs of removed VMs (or former VMs of a name made again) that may still have it open, and where (absent: an older agent's answer) */
  formerRuns?: Array<{ vm: string, node: string, name: string }>
  writers: NodeWriters[]
}

export interface VolumeView {
  id: string
  path: string
  sizeBytes: number
  replicas: number
  minReplicas: number
  thin: boolean
  epoch: number
  /** the document's lifecycle state (ready, ...) */
  state: Volume['state']
  /** the computed state: healthy, degraded or repairing, why, and the repair's progress */
  health: VolumeHealthView
  /** this node's last scrub of its own copies of the volume */
  scrub: { at: string, objects: number, bad: number, repaired: number } | null
  parent: string | null
  /** what it was cloned from as users name it (cloneSource: PATH@SNAP, or what is left of it), null for no clone */
  clonedFrom: string | null
  /**
   * the layers it reads through (each snapshot kept adds one), the most it may, how many
   * deleted snapshots' layers wait to be folded away (layer-reclaim.ts), and, while some
   * do, what holds them up as this node sees it (absent: nothing, they fold at the next
   * background pass of the volume's coordinator), and what the others under its top are
   * there for (layer-reclaim.ts layerUses: snapshots, source, clones, untilNextSnapshot)
   */
  layers: { count: number, max: number, folding: number, waiting?: string } & Omit<LayerUses, 'folding'>
  /** `export`: a `vgrid vol export`'s snapshot, the node whose export reads it and until when its hold stands unrenewed (export-holds.ts) */
  snapshots: Array<{ name: string, createdAt: string, sizeBytes: number, nbd: string, export?: { node: string, name: string, until: string } }>
  /** nodes `vgrid node forget --force` gave up while writes of this volume may have been only there: objects with no copy left read as zeros since */
  writesGivenUp?: Array<{ node: string, name: string, at: string }>
  /**
   * the nodes its records of where writes went still place objects on (write-intervals.ts):
   * a drained node leaves only once none does (a repair that ends healthy clears them)
   */
  writesWentTo?: string[]
  /** open it with qemu-img, nbdinfo, nbdcopy or QEMU on this node */
  nbd: string
  /** on a create or clone: the volumes promise more than the pool has free (overProvisioned) */
  note?: string
}

export interface RepairStatusView {
  volume: string
  /** the copies the volume keeps (R) */
  replicas?: number
  running: RepairProgressView | null
  last: (Omit<LastRepair, 'at'> & { at: string }) | null
}

interface IdParams { id: string }
const idParams = { type: 'object', properties: { id: { type: 'string', minLength: 1, maxLength: 2100 } }, required: ['id'] }

/** What the routes use of the GVS service (a narrow view, so the service and its routes do not import each other). */
export interface GvsRoutesDeps {
  readonly components: {
    state: { read: () => Reader, write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T> }
    /** who else is alive: a path given here may have been given on another node at the same moment */
    membership?: { readonly members: ReadonlyMap<string, { state: string }> }
    peerId?: string
  }
  /** how long a create or rename waits for such a concurrent one to arrive (default PATH_SETTLE_MS) */
  readonly pathSettleMs?: number
  readonly store: { removeVolume: (volume: string) => Promise<unknown>, forgetLine: (base: string) => Promise<unknown> }
  /** tells every live node's replicas that a snapshot froze these layers (frozen-layers.ts) */
  freeze: (layers: string[]) => Promise<void>
  /** why no layer may be freed now (null: it may): the background pass frees them later (layer-reclaim.ts) */
  mayFree: () => string | null
  /** why the deleted snapshots' layers of a volume are not folded away yet, or null (layer-reclaim.ts) */
  foldWait: (v: Volume, mayFree: string | null) => string | null
  /** why this node sees no majority of the roll, or null: no volume is created here then */
  noMajority: () => string | null
  readonly lastRepairs: ReadonlyMap<string, LastRepair>
  readonly scrub: { status: () => ScrubStatus, now: () => Promise<ScrubReport> }
  volumes: () => Volume[]
  pool: () => Pool
  repair: (v: Volume, opts?: { scrub?: boolean }) => Promise<RepairReport>
  /** why a repair is not run from this node now (live members it does not reach), or null */
  repairRefusal?: () => string | null
  /** why a repair would copy data that a member away for a restart holds (null: none): refused unless forced */
  repairWaitsFor?: (v: Volume) => string | null
  repairing: (id: string) => RepairProgressView | null
  health: (vs: Volume[]) => Promise<Map<string, VolumeHealthView>>
  /** the draining nodes whose objects move off them now, and why none do if so (live-placement.ts evacuating) */
  evacuation?: () => { nodes: string[], why?: string, away?: string[] }
  writersOf: (id: string) => Promise<NodeWriters[]>
  uriOf: (v: Volume) => string
  /** a node's name (its id where none is known) */
  nodeName?: (node: string) => string
  /** the holds of `vgrid vol export`'s snapshots on this node, and what becomes of a volume's export snapshots (export-sweeper.ts) */
  readonly exportSweeper: {
    lease: (volume: string, snapshot: string, now?: number) => void
    endLease: (volume: string, snapshot: string) => void
    readonly leaseMs: number
    record: (now?: number, quiet?: boolean) => ExportRecord
    fates: (v: Volume) => ExportFate[]
  }
}

const iso = (ms: number): string => new Date(ms).toISOString()

/** a snapshot this node wrote: which, and its stamp (at, by) to tell it from one another node wrote under the name */
interface MadeSnapshot { volume: string, path: string, name: string, at: number, by: string }

/** longer than a change takes to reach every node (the claims' settle window, DVMM) */
export const PATH_SETTLE_MS = 1500

export function gvsRoutes (svc: GvsRoutesDeps) {
  const { state } = svc.components

  /**
   * After a write gave `path` to volume `id`: every node checks a path against its own
   * copy of the document, so another may have given it away at the same moment. Once
   * such a change had time to arrive, the request whose volume does not hold the path
   * (byPath: the smaller id does) is undone and answered 409: of two requests that
   * raced, one succeeds. Decided inside the write, on the volumes as they are then: a
   * volume renamed or removed meanwhile (answered to its own request) is left alone, and
   * a rename goes back to its old path only while that is free (else it stays behind the
   * holder, reachable by its id). Alone on the grid there is nobody to race with.
   */
  /** other members that may be writing at the same moment */
  const othersAlive = (): boolean => {
    const m = svc.components.membership
    return m != null && [...m.members].some(([node, x]) => node !== svc.components.peerId && x.state !== 'dead' && x.state !== 'left')
  }

  const settlePath = async (id: string, path: string, what: 'create' | 'clone' | 'rename', was?: string): Promise<void> => {
    if (!othersAlive()) return
    await new Promise(resolve => setTimeout(resolve, svc.pathSettleMs ?? PATH_SETTLE_MS))
    const lost = await state.write(w => {
      const l = lostPath(w.reader.list('volumes'), id, path, what === 'rename' ? was : undefined)
      if (l == null) return null
      if (what !== 'rename') w.remove('volumes', id)
      else if (l.back) w.update('volumes', id, { path: was })
      return l
    }, `volume ${what} ${path}: settled`)
    if (lost == null) return
    const taken = `a volume already has the path "${path}" (${lost.holder}, given it at the same moment on another node)`
    if (what !== 'rename' || lost.back) throw new ConflictError(`${taken}: this ${what} was undone`, 'exists')
    throw new ConflictError(`${taken}, and "${String(was)}" was taken meanwhile: volume ${id} stays at "${path}" behind ${lost.holder}, reachable by its id; rename it`, 'exists')
  }

  const scrubOf = (v: Volume): VolumeView['scrub'] => {
    const last = svc.scrub.status().last
    const found = last == null ? null : scrubOfVolume(last, v)
    // the last scrub checked none of its copies here (made since, or none here): not a scrub of it
    return found == null ? null : { at: iso(last!.finishedAt), ...found }
  }
  const views = async (vs: Volume[]): Promise<VolumeView[]> => {
    const all = svc.volumes()
    const health = new Map([...await svc.health(vs)].map(([id, h]) => [id, sayHealth(h, all, n => svc.nodeName?.(n) ?? n)]))
    const waiting = foldingLayers(all)
    const readers = layerReaders(all)
    // what every fold waits for, asked once for the whole answer (a roll and table scan)
    let mayFree: string | null | undefined
    const layersView = (v: Volume): VolumeView['layers'] => {
      const folding = waiting.get(v.id) ?? new Set<string>()
      const why = folding.size > 0 ? svc.foldWait(v, mayFree ??= svc.mayFree()) : null
      const { snapshots, source, clones, untilNextSnapshot } = layerUses(v, readers, folding)
      return { count: layersOf(v).length, max: MAX_LAYERS, folding: folding.size, ...(why != null ? { waiting: why } : {}), snapshots, source, clones, untilNextSnapshot }
    }
    return vs.map(v => ({
      id: v.id,
      path: v.path,
      sizeBytes: v.sizeBytes,
      replicas: v.replicas,
      minReplicas: v.minReplicas ?? v.replicas,
      thin: v.thin !== false,
      epoch: v.epoch ?? 1,
      state: v.state,
      health: health.get(v.id) ?? { state: 'degraded', reasons: ['no state could be computed'], repair: null, lastRepair: null },
      scrub: scrubOf(v),
      parent: v.parent,
      clonedFrom: cloneSource(v, all),
      layers: layersView(v),
      snapshots: Object.values(v.snapshots).sort((a, b) => a.createdAt - b.createdAt).map(s => {
        const x = exportRecordOf(s)
        return { name: s.name, createdAt: iso(s.createdAt), sizeBytes: snapshotSize(v, s), nbd: svc.uriOf(v).replace(/\?socket=/, `@${s.name}?socket=`), ...(x != null ? { export: { node: x.node, name: svc.nodeName?.(x.node) ?? x.node, until: iso(x.until) } } : {}) }
      }),
      writesGivenUp: (v.writesGivenUp ?? []).map(g => ({ node: g.node, name: g.name, at: iso(g.at) })),
      writesWentTo: [...placedOn(v)].sort(),
      nbd: svc.uriOf(v)
    }))
  }
  const view = async (v: Volume): Promise<VolumeView> => (await views([v]))[0]!
  const body = bodyObject
  /** a repair's message with layers said as volumes and peer ids as node names (bb33: a full target named by its peer id) */
  const say = (e: string, all: readonly Volume[]): string => sayNodes(sayLayers(e, all), n => svc.nodeName?.(n) ?? n)
  const repairStatus = (v: Volume): RepairStatusView => {
    const l = svc.lastRepairs.get(v.id)
    const all = svc.volumes()
    return { volume: v.path, replicas: v.replicas, running: svc.repairing(v.id), last: l == null ? null : { ...l, at: iso(l.at), errors: l.errors.map(e => say(e, all)), ...(l.unavailableWhy != null ? { unavailableWhy: say(l.unavailableWhy, all) } : {}), ...(l.scrubbed != null ? { scrubbed: sayFound(l.scrubbed, all) } : {}) } }
  }

  /** a volume's export snapshots: those whose export is gone (they go with it), those whose export runs, and where */
  const exportsOf = (v: Volume): { abandoned: string[], running: Array<{ name: string, node: string }> } => {
    const fates = svc.exportSweeper.fates(v)
    // a quiet export's snapshot (of a volume no one was seen using) goes with the volume, running or not: its export then fails, as before such exports took one (rv49)
    return {
      abandoned: fates.filter(f => f.abandoned || f.quiet === true).map(f => f.snapshot),
      running: fates.filter(f => !f.abandoned && f.quiet !== true).map(f => ({ name: f.snapshot, node: svc.nodeName?.(f.node) ?? f.node }))
    }
  }

  return (app: FastifyInstance): void => {
    app.get<{ Querystring: { prefix?: string } }>('/v1/volumes', { config: { query: ['prefix'] } }, async req => {
      const prefix = req.query.prefix ?? '/'
      if (typeof prefix !== 'string') throw new ValidationError('prefix', 'prefix must be given once, as a path')
      // every volume path starts with "/": "shop" or "../x" would list nothing, as if there were none
      if (prefix !== '/') checkPath(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix, 'prefix')
      const vs = svc.volumes().filter(v => v.path === prefix || v.path.startsWith(prefix.endsWith('/') ? prefix : prefix + '/'))
      return { volumes: await views(vs.sort((a, b) => a.path.localeCompare(b.path))), ...svc.evacuation != null ? { evacuation: svc.evacuation() } : {} }
    })

    app.post('/v1/volumes', async (req, reply): Promise<VolumeView> => {
      const b = body(req.body)
      // a clone takes its size and copies from its snapshot
      onlyFields(b, b.from != null ? ['path', 'from'] : ['path', 'size', 'replicas', 'minReplicas', 'thin'])
      // with "from": a clone of a snapshot, in constant time. Planned inside the write,
      // against the volumes as it finds them: a path taken while an earlier write waited counts
      const plan = (vs: Volume[]): Draft<'volumes'> => b.from != null ? planClone(b, vs) : planCreate(b as CreateRequest, vs, svc.pool())
      plan(svc.volumes()) // bad input says what is wrong first
      // cut off from the majority, the path could be given to another volume on the other
      // side meanwhile (the merge keeps one: this one, answered 201, would go), and the
      // volume could be neither read nor written here until it sees a majority
      const noMajority = svc.noMajority()
      if (noMajority != null) throw new ConflictError(`${noMajority}: a volume ${b.from != null ? 'cloned' : 'created'} here could take a path the other side gives another volume, and could not be used until this node sees a majority; ${b.from != null ? 'clone' : 'create'} it through a node that sees one`, 'no_majority')
      const v = await state.write(w => w.put('volumes', plan(w.reader.list('volumes'))), `volume create ${String(b.path)}`)
      await settlePath(v.id, v.path, b.from != null ? 'clone' : 'create')
      void reply.code(201)
      const note = overProvisioned(svc.volumes(), svc.pool())
      return { ...await view(v), ...(note != null ? { note } : {}) }
    })

    app.get<{ Params: IdParams }>('/v1/volumes/:id', { schema: { params: idParams } }, async req => await view(findVolume(svc.volumes(), req.params.id)))

    app.get<{ Params: IdParams }>('/v1/volumes/:id/users', { schema: { params: idParams } }, async (req): Promise<VolumeUsersView> => {
      const v = findVolume(svc.volumes(), req.params.id)
      const r = state.read()
      const u = volumeUsers(v, r.list('vms'), r.list('leases'))
      const use = volumeUse(v, r.list('vms'), r.list('leases'))
      const vm = (running: boolean) => (x: Vm) => ({ id: x.id, name: x.name, desired: x.desired, running, state: use.states.get(x.id) ?? (running ? 'running' : 'stopped') })
      const formerRuns = use.formerRuns.map(f => ({ ...f, name: svc.nodeName?.(f.node) ?? f.node }))
      return { volume: v.id, path: v.path, vms: [...u.running.map(vm(true)), ...u.stopped.map(vm(false))], formerRuns, writers: (await svc.writersOf(v.id)).filter(x => x.writers > 0) }
    })

    app.patch<{ Params: IdParams }>('/v1/volumes/:id', { schema: { params: idParams } }, async req => {
      const b = body(req.body)
      onlyFields(b, ['size', 'path'])
      // a field given as null is given: its check says what it must be (it read "nothing to change")
      if (b.size === undefined && b.path === undefined) throw new ValidationError('body', 'nothing to change: give size (grow) or path (rename)')
      if (b.size === null) checkSize(null)
      if (b.path === null) checkPath(null)
      // one at a time: a rename that loses its settle window is undone, and a resize
      // made in the same change would stay with nobody told
      if (b.size != null && b.path != null) throw new ValidationError('body', 'give size (grow) or path (rename), not both: make them two requests')
      const v = findVolume(svc.volumes(), req.params.id, b.size != null ? 'resized' : 'renamed')
      if (b.path != null) {
        const r = state.read()
        checkRename(v, r.list('vms'), r.list('leases'), await svc.writersOf(v.id))
      }
      // checked inside the write, on the volume as it is then: a resize that waited must not shrink what another grew
      let was = v.path
      let sizeWas = v.sizeBytes
      const changed = await state.write(w => {
        const cur = stillThere(w.reader.list('volumes'), v)
        was = cur.path
        sizeWas = cur.sizeBytes
        const patch: Partial<Volume> = {}
        if (b.size != null) patch.sizeBytes = planResize(cur, b.size, svc.pool())
        if (b.path != null) {
          // again inside the write: a VM may have started from it while the writers were asked
          checkRename(cur, w.reader.list('vms'), w.reader.list('leases'))
          patch.path = planRename(cur, b.path, w.reader.list('volumes'))
        }
        return w.update('volumes', v.id, patch)
      }, `volume change ${v.path}`)
      if (b.path != null && changed.path !== was) {
        await settlePath(v.id, changed.path, 'rename', was)
        // the volume as the document has it now: a rename of the same volume elsewhere at
        // the same moment may have won over this one, which then did not happen (bb26: it
        // answered 200 with the other's path)
        const now = stillThere(svc.volumes(), v)
        if (now.path !== changed.path) throw new ConflictError(`volume "${was}" is now at "${now.path}" (renamed through another node meanwhile, or at the same moment and that rename won): this rename to "${changed.path}" did not stay`, 'renamed_meanwhile')
        return await view(now)
      }
      // QEMU cannot grow a disk it reaches over NBD while it runs: its VMs see the new
      // size once they start again, which the answer says rather than leave it a mystery
      // the size it has already: nothing changed, and no VM need be told (bb53)
      if (b.size != null && changed.sizeBytes === sizeWas) return { ...await view(changed), unchanged: true }
      const r = state.read()
      const running = b.size != null ? volumeUsers(changed, r.list('vms'), r.list('leases')).running.map(x => x.name).sort() : []
      return { ...await view(changed), ...(running.length > 0 ? { seenAfterRestartBy: running } : {}) }
    })

    app.delete<{ Params: IdParams, Querystring: { snapshots?: unknown } }>('/v1/volumes/:id', { schema: { params: idParams }, config: { query: ['snapshots'] } }, async req => {
      const withSnapshots = booleanQuery(req.query, 'snapshots')
      const v = findVolume(svc.volumes(), req.params.id, 'removed as a volume')
      const r = state.read()
      checkDestroy(v, r.list('vms'), r.list('leases'))
      // the snapshots of exports that are gone go with it; those of exports that run are the volume's still
      checkSnapshotsGo(v, withSnapshots, exportsOf(v))
      checkDestroy(v, [], [], await svc.writersOf(v.id))
      // again inside the write: a VM may have taken the volume while the writers were asked
      const { unread, lineRead, snapshots } = await state.write(w => {
        const all = w.reader.list('volumes')
        const cur = stillThere(all, v)
        checkDestroy(cur, w.reader.list('vms'), w.reader.list('leases'))
        // a snapshot taken meanwhile is refused too
        checkSnapshotsGo(cur, withSnapshots, exportsOf(cur))
        w.remove('volumes', v.id)
        // a clone of one of its snapshots reads on through the layers under it: those stay
        const still = referencedLayers(all.filter(x => x.id !== v.id))
        return { unread: [...referencedLayers([cur])].filter(l => !still.has(l)), lineRead: [...still].some(l => layerNumber(l).base === v.id), snapshots: Object.values(cur.snapshots).sort((a, b) => a.createdAt - b.createdAt).map(s => s.name) }
      }, `volume rm ${v.path}`)
      // this node's copies of the layers nothing reads go now, the others free theirs when
      // they see it gone; unless a member is down or ahead of this node (a clone made
      // there may read them): then the background pass frees them once that is over
      if (svc.mayFree() == null) {
        for (const l of unread) await svc.store.removeVolume(l)
        // its line's writer epochs too, unless a layer of it is still read (see layer-reclaim.ts free)
        if (!lineRead) await svc.store.forgetLine(v.id)
      }
      return { removed: v.id, path: v.path, snapshots }
    })

    /** snapshots of several volumes in one change of the document: one consistent cut (`exported`: an export's, with its record); the layers frozen, and each snapshot made */
    const snapshot = (w: Writer, vs: Volume[], name: unknown, now: number, exported?: ExportRecord): { frozen: string[], made: MadeSnapshot[] } => {
      const frozen: string[] = []
      const made: MadeSnapshot[] = []
      // a set whose name some of its volumes have already: all of them named (bb40: a retry named only the last)
      if (vs.length > 1 && typeof name === 'string') {
        const all = w.reader.list('volumes')
        const has = vs.map(v => stillThere(all, v)).filter(v => snapshotOf(v, name) != null).map(v => `"${v.path}"`)
        if (has.length > 1) throw new ConflictError(`volumes ${has.join(', ')} already have a snapshot "${name}"${has.length === vs.length ? ' (all of the set: taken before?)' : ''}`, 'exists')
      }
      for (const v of vs) {
        // planned on the volume as the write finds it: the layers of a snapshot taken while this one waited stay
        const current = stillThere(w.reader.list('volumes'), v)
        const plan = planSnapshot(current, name, now)
        w.update('volumes', v.id, { layers: plan.layers })
        const s = w.addSnapshot(v.id, exported == null ? plan.snapshot : { ...plan.snapshot, export: exported } as typeof plan.snapshot)
        made.push({ volume: v.id, path: current.path, name: s.name, at: s.at, by: s.by })
        frozen.push(layersOf(current)[0]!)
      }
      return { frozen, made }
    }

    /**
     * After snapshots were written: a `vol rm` through another node at the same moment
     * removes the volume with them, and a snapshot of the same name taken there keeps
     * one entry of the two (bb35: both answered 201, and a 201 snapshot was gone). Once
     * such a change had time to arrive, a snapshot not in the document as written here
     * is answered 409. Alone on the grid there is nobody to race with.
     */
    const settleSnapshots = async (made: readonly MadeSnapshot[]): Promise<void> => {
      if (!othersAlive()) return
      await new Promise(resolve => setTimeout(resolve, svc.pathSettleMs ?? PATH_SETTLE_MS))
      const lost = (m: MadeSnapshot, r: Reader): ConflictError | null => {
        const v = r.get('volumes', m.volume)?.value
        if (v == null) return new ConflictError(`volume "${m.path}" was removed through another node at the same moment: its snapshot "${m.name}" went with it`, 'removed_meanwhile')
        const s = snapshotOf(v, m.name)
        if (s == null) return new ConflictError(`snapshot "${m.name}" of volume "${v.path}" is gone: removed through another node at the same moment`, 'removed_meanwhile')
        if (s.at !== m.at || s.by !== m.by) return new ConflictError(`volume "${v.path}" already has a snapshot "${m.name}" (taken at the same moment through another node; the document kept that one, and this one did not stay)`, 'exists')
        return null
      }
      const first = made.map(m => lost(m, state.read())).find(e => e != null)
      if (first == null) return
      if (made.length === 1) throw first
      // a set snapshot is whole or not at all (rv40: the others stayed, a set with a hole):
      // the snapshots of this set that stand are taken back (their layers stay while read)
      const undone: string[] = []
      await state.write(w => {
        for (const m of made) {
          if (lost(m, w.reader) != null) continue
          w.removeSnapshot(m.volume, m.name)
          undone.push(`${m.path}@${m.name}`)
        }
      }, `volume set snapshot @${made[0]!.name} taken back`)
      for (const m of made) svc.exportSweeper.endLease(m.volume, m.name)
      throw new ConflictError(`${first.message}; a set snapshot is taken whole or not at all, so ${undone.length > 0 ? `the set's other snapshots were removed (${undone.join(', ')})` : 'none of it stays'}`, first.code)
    }

    app.post<{ Params: IdParams }>('/v1/volumes/:id/snapshots', { schema: { params: idParams } }, async (req, reply) => {
      const b = body(req.body)
      onlyFields(b, ['name'])
      const v = findVolume(svc.volumes(), req.params.id, 'snapshotted (snapshot a clone of it)')
      // answered once the replicas refuse further writes to the frozen layer: a writer
      // whose document lags can no longer put a later write into the snapshot
      const { frozen, made } = await state.write(w => snapshot(w, [v], b.name, Date.now()), `volume snapshot ${v.path}@${String(b.name)}`)
      await svc.freeze(frozen)
      await settleSnapshots(made)
      void reply.code(201)
      return await view(stillThere(svc.volumes(), v))
    })

    // `vgrid vol export` of a volume in use: a snapshot named here (export-<UTC time>-<random>),
    // recording this node and until when its hold stands (export-holds.ts), and a lease on
    // it for `leaseMs`, which the export renews (POST .../snapshots/NAME/lease) while it
    // copies. Once the lease ran out and no NBD session here reads the snapshot, this node
    // removes it (export-sweeper.ts): an export killed midway leaves nothing behind.
    app.post<{ Params: IdParams }>('/v1/volumes/:id/export-snapshot', { schema: { params: idParams } }, async (req, reply) => {
      const b = optionalBody(req.body)
      const extra = Object.keys(b).find(k => k !== 'quiet')
      if (extra !== undefined) throw new ValidationError(extra, `unknown field "${extra}": this request takes only quiet (the agent names the export's snapshot)`)
      if (b.quiet !== undefined && typeof b.quiet !== 'boolean') throw new ValidationError('quiet', 'quiet must be true or false: true for an export of a volume no one was seen using, whose snapshot then goes with the volume should it be removed')
      const v = findVolume(svc.volumes(), req.params.id, 'snapshotted (snapshot a clone of it)')
      const now = Date.now()
      const name = exportSnapshotName(now, randomBytes(4).readUInt32BE(0).toString(36).slice(0, 6))
      // leased from before it exists: no sweep here finds it unheld
      svc.exportSweeper.lease(v.id, name, now)
      try {
        await svc.freeze((await state.write(w => snapshot(w, [v], name, now, svc.exportSweeper.record(now, b.quiet === true)), `volume snapshot ${v.path}@${name} (export)`)).frozen)
      } catch (err) { svc.exportSweeper.endLease(v.id, name); throw err }
      void reply.code(201)
      return { snapshot: name, leaseMs: svc.exportSweeper.leaseMs, volume: await view(stillThere(svc.volumes(), v)) }
    })

    app.post<{ Params: IdParams & { name: string } }>('/v1/volumes/:id/snapshots/:name/lease', { schema: { params: idParams } }, async req => {
      const b = optionalBody(req.body)
      const extra = Object.keys(b)[0]
      if (extra !== undefined) throw new ValidationError(extra, `unknown field "${extra}": this request takes no fields`)
      const v = findVolume(svc.volumes(), req.params.id)
      const s = snapshotOf(v, req.params.name)
      if (s == null) throw new NotFoundError(`volume "${v.path}" has no snapshot ${quoteGiven(req.params.name)} (an export's is removed once its lease runs out)`)
      const r = exportRecordOf(s)
      if (r == null) throw new ConflictError(`${v.path}@${s.name} is not a snapshot vgrid vol export took: it has no lease to renew`, 'not_export')
      const self = svc.exportSweeper.record().node
      if (r.node !== self) throw new ConflictError(`${v.path}@${s.name} is the snapshot of an export served by ${svc.nodeName?.(r.node) ?? r.node}: renew its lease there`, 'not_here')
      svc.exportSweeper.lease(v.id, s.name)
      return { snapshot: s.name, leaseMs: svc.exportSweeper.leaseMs }
    })

    app.post('/v1/snapshots', async (req, reply) => {
      const b = body(req.body)
      onlyFields(b, ['name', 'volumes'])
      if (!Array.isArray(b.volumes) || b.volumes.length === 0 || b.volumes.length > 256) throw new ValidationError('volumes', 'volumes must list 1-256 volume paths or ids')
      const bad = (b.volumes as unknown[]).findIndex(x => typeof x !== 'string' || x === '')
      if (bad >= 0) throw new ValidationError('volumes', `volumes[${bad}] is ${JSON.stringify(b.volumes[bad]) ?? String(b.volumes[bad])}: each must be a volume path or id (a string)`)
      const all = svc.volumes()
      const vs = (b.volumes as string[]).map(x => findVolume(all, x, 'snapshotted (snapshot a clone of it)'))
      const twice = vs.find((v, i) => vs.findIndex(x => x.id === v.id) !== i)
      if (twice != null) throw new ValidationError('volumes', `volume ${twice.path} is listed twice (by path or id): each volume once`)
      // written in one order on every node: of two same-named sets taken at once through
      // two nodes, the document keeps one whole, not a volume of each (rv41)
      const inOrder = [...vs].sort((x, y) => x.id < y.id ? -1 : x.id > y.id ? 1 : 0)
      const { frozen, made } = await state.write(w => snapshot(w, inOrder, b.name, Date.now()), `volume set snapshot @${String(b.name)}`)
      await svc.freeze(frozen)
      await settleSnapshots(made)
      void reply.code(201)
      return { snapshot: b.name, volumes: await views(vs.map(v => stillThere(svc.volumes(), v))) }
    })

    app.delete<{ Params: IdParams & { name: string } }>('/v1/volumes/:id/snapshots/:name', async req => {
      const v = findVolume(svc.volumes(), req.params.id)
      if (snapshotOf(v, req.params.name) == null) throw new NotFoundError(`volume "${v.path}" has no snapshot ${quoteGiven(req.params.name)}`)
      // its entry only (snapshots taken meanwhile stay); its layers stay while the volume or a clone still reads through them
      await state.write(w => { stillThere(w.reader.list('volumes'), v); w.removeSnapshot(v.id, req.params.name) }, `volume snapshot rm ${v.path}@${req.params.name}`)
      // an export's lease on it (if any) ends with it
      svc.exportSweeper.endLease(v.id, req.params.name)
      return await view(stillThere(svc.volumes(), v))
    })

    // wait (default true): answer with the report when done; false: 202 at once, and
    // GET .../repair shows the progress (what `vgrid vol repair` polls for its bar)
    app.post<{ Params: IdParams }>('/v1/volumes/:id/repair', { schema: { params: idParams } }, async (req, reply) => {
      const b = optionalBody(req.body)
      onlyFields(b, ['wait', 'scrub', 'force'])
      const wait = flag(b, 'wait', true)
      const scrub = flag(b, 'scrub', false)
      const force = flag(b, 'force', false)
      const v = findVolume(svc.volumes(), req.params.id)
      const refused = svc.repairRefusal?.() ?? null
      if (refused != null) throw new ConflictError(`${v.path} is not repaired from here: ${refused}`, 'out_of_reach')
      const waits = force ? null : svc.repairWaitsFor?.(v) ?? null
      if (waits != null) throw new ConflictError(`${v.path} is not repaired now: ${waits}. Repair once it is back, or with --force (force: true) to copy its data elsewhere now`, 'member_restarting')
      const done = svc.repair(v, { scrub })
      if (!wait) {
        done.catch(() => {}) // its errors are in GET .../repair
        void reply.code(202)
        return repairStatus(v)
      }
      const r = await done
      const all = svc.volumes()
      return { volume: v.path, done: r.done, total: r.total, bytes: r.bytes, failed: r.failed, freed: r.freed, health: r.health, errors: r.errors.map(e => say(e, all)), lost: r.plan.lost, short: r.plan.short.length, scrubbed: sayFound(svc.lastRepairs.get(v.id)?.scrubbed ?? [], all) }
    })

    app.get<{ Params: IdParams }>('/v1/volumes/:id/repair', { schema: { params: idParams } }, async req => repairStatus(findVolume(svc.volumes(), req.params.id)))

    /** this node's scheduled scrub of its own copies: when, how far, what it found */
    const scrubStatus = (): ScrubStatus => { const st = svc.scrub.status(); return st.last == null ? st : { ...st, last: sayScrub(st.last, svc.volumes()) } }
    app.get('/v1/gvs/scrub', async () => scrubStatus())

    app.post('/v1/gvs/scrub', async (req, reply) => {
      const b = optionalBody(req.body)
      onlyFields(b, ['wait'])
      const wait = flag(b, 'wait', false)
      const done = svc.scrub.now()
      // a failure is logged and in the status (`failed`), where `vol scrub --now` reads it
      if (!wait) { done.catch(() => {}); void reply.code(202); return scrubStatus() }
      const r = await done.catch((err: unknown) => { throw new UnavailableError(`the scrub of this node's copies failed: ${err instanceof Error ? err.message : String(err)}`, 'scrub_failed') })
      return sayScrub(r, svc.volumes())
    })
  }
}

/** scrub findings with their layer said as users name it (`volume`: path, path@snapshot), their errors likewise */
function sayFound<T extends { layer: string, error?: string }> (xs: readonly T[], vols: readonly Volume[]): Array<T & { volume: string }> {
  return xs.map(x => ({ ...x, volume: sayLayers(x.layer, vols), ...(x.error != null ? { error: sayLayers(x.error, vols) } : {}) }))
}

/** a scrub's report with its findings said as users name their volumes */
function sayScrub (r: ScrubReport, vols: readonly Volume[]): ScrubReport {
  return { ...r, unrepaired: sayFound(r.unrepaired, vols) }
}

/** a volume's state with the layer names in its reasons said as paths (sayLayers) */
/** a health view with layers said as volumes and peer ids as node names (bb40: "replica 12D3KooW...: disk full", where vgrid status said the name) */
function sayHealth (h: VolumeHealthView, vols: readonly Volume[], nameOf: (id: string) => string): VolumeHealthView {
  const say = (text: string): string => sayNodes(sayLayers(text, vols), nameOf)
  const lastRepair = h.lastRepair?.unavailableWhy != null ? { ...h.lastRepair, unavailableWhy: say(h.lastRepair.unavailableWhy) } : h.lastRepair
  return { ...h, reasons: h.reasons.map(say), lastRepair }
}
