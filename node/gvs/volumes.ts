// The volume namespace's decisions, pure over the document's volumes and the pool:
// what a create, resize, rename or destroy request becomes, or the clear error that
// refuses it (a ValidationError or ConflictError, which the API maps to a 4xx).
import { activeIntervals } from './write-intervals.ts'
import { randomBytes } from 'node:crypto'
import { ID_PATTERN, snapshotOf, type Draft, type Lease, type Snapshot, type Volume, type Vm } from '../../crdt/index.ts'
import { formerRun, sameVm } from '../../crdt/placement/index.ts'
import { ConflictError, NotFoundError, ValidationError, quoteGiven } from '../errors.ts'
import { parseSize } from '../resources.ts'
import { bytes } from '../cli/format.ts'
import { sayWriters, type NodeWriters } from './say-writers.ts'

export const PATH_PATTERN = /^(\/[A-Za-z0-9._-]{1,128}){1,16}$/
/** volume sizes are whole 512-byte sectors: QEMU's NBD client mishandles a partial last sector */
export const SECTOR = 512
export const DEFAULT_REPLICAS = 2
export const MAX_REPLICAS = 16

export interface Pool {
  /** live nodes that can hold replicas */
  nodes: number
  /** free disk bytes over those nodes */
  freeBytes: number
}

export interface CreateRequest {
  path?: unknown
  size?: unknown
  replicas?: unknown
  minReplicas?: unknown
  thin?: unknown
}

export function checkPath (path: unknown, field = 'path'): string {
  if (path === undefined) throw new ValidationError(field, `${field} is missing: a volume path like /shop/db/data`)
  if (typeof path !== 'string' || !PATH_PATTERN.test(path)) {
    throw new ValidationError(field, `${field} ${JSON.stringify(path)} is not a volume path: 1-16 segments like /shop/db/data, each 1-128 letters, digits, ".", "_" or "-"`)
  }
  if (path.split('/').some(seg => seg === '.' || seg === '..')) throw new ValidationError(field, `${field} "${path}" holds a "." or ".." segment`)
  // a volume is named by its id or by its path without the "/" (NBD export names, the
  // API): a path of an id's shape could name another volume, whose disk a VM would open
  if (ID_SHAPED_PATH.test(path)) throw new ValidationError(field, `${field} "${path}" has the shape of a volume id (vol- and 12 hex digits), which names volumes too: choose another path`)
  return path
}

const ID_SHAPED_PATH = /^\/vol-[0-9a-f]{12}$/

/** bytes from a number or a size text ("10G"); positive and whole sectors */
export function checkSize (size: unknown, field = 'size'): number {
  let n: number
  if (typeof size === 'number') n = size
  else if (typeof size === 'string') {
    try { n = parseSize(size) } catch (err) { throw new ValidationError(field, `${field}: ${(err as Error).message}`) }
  } else if (size === undefined) throw new ValidationError(field, `${field} is required: bytes, or a size such as 10G`)
  else throw new ValidationError(field, `${field} must be bytes (a number) or a size such as "10G", not ${size === null ? 'null' : Array.isArray(size) ? 'an array' : typeof size === 'object' ? 'an object' : `a ${typeof size}`}`)
  // a JSON number past 2^53 arrives rounded: quoting it would name a size never given
  const said = typeof size === 'number' ? `(a number beyond ${Number.MAX_SAFE_INTEGER}, which JSON cannot carry exactly)` : JSON.stringify(size)
  if (Number.isFinite(n) && n > Number.MAX_SAFE_INTEGER) throw new ValidationError(field, `${field} ${said} is larger than any volume can be (at most ${Number.MAX_SAFE_INTEGER - (Number.MAX_SAFE_INTEGER % SECTOR)} bytes, just under 8 PiB)`, 'too-large')
  if (!Number.isSafeInteger(n) || n <= 0) throw new ValidationError(field, `${field} ${typeof size === 'number' ? String(size) : JSON.stringify(size)} must be a positive whole number of bytes`)
  // a bare number is bytes: a small one was most likely meant in M or G (bb46; as vm create's --memory hints)
  if (n % SECTOR !== 0) throw new ValidationError(field, `${field} ${n} is not a multiple of ${SECTOR} bytes (whole sectors)${n < 1024 * 1024 && /^\s*\d+\s*$/.test(String(size)) ? `; a number alone is bytes: ${n}M or ${n}G?` : ''}`)
  return n
}

/**
 * The volume a path names. Two nodes may each give a path to a volume at the same
 * moment (each checks only its own copy of the document); until the one that lost gives
 * it back (the API's settle check), every node names the same one: the smaller id.
 */
export function byPath (volumes: Iterable<Volume>, path: string): Volume | undefined {
  let holder: Volume | undefined
  for (const v of volumes) if (v.path === path && (holder == null || v.id < holder.id)) holder = v
  return holder
}

/**
 * A volume by id or path. A VOLUME@SNAPSHOT names no volume: the error says whether that
 * snapshot exists, and, for one that does, that it is read-only and what to do instead;
 * with `doing` (what the request would do: "resized") it is a 409 `read-only`.
 */
export function findVolume (volumes: Iterable<Volume>, idOrPath: string, doing?: string): Volume {
  const all = [...volumes]
  const v = all.find(x => x.id === idOrPath) ?? byPath(all, idOrPath)
  if (v == null) throw notAVolume(all, idOrPath, doing)
  return v
}

/**
 * The volume `v` as `volumes` have it now (found by its id): a request that found it by
 * its path and then waited (for a write, a settle) says it was removed meanwhile, by the
 * path it was given, not a bare "no volume with id" naming an id the user never typed.
 */
export function stillThere (volumes: Iterable<Volume>, v: Pick<Volume, 'id' | 'path'>): Volume {
  for (const x of volumes) if (x.id === v.id) return x
  throw new NotFoundError(`volume ${v.path} (${v.id}) was removed meanwhile, by another request`)
}

/** why `ref` names no volume (pure) */
function notAVolume (all: Volume[], ref: string, doing?: string): Error {
  const parts = splitSnapshotRef(ref)
  const of = parts == null ? undefined : all.find(x => x.id === parts.volume) ?? byPath(all, parts.volume)
  if (parts == null || of == null) return new NotFoundError(`no volume with id or path ${quoteGiven(ref)}`)
  if (snapshotOf(of, parts.snapshot) == null) {
    const names = Object.keys(of.snapshots).sort()
    const has = names.length === 0 ? 'it has none' : `it has ${names.length > 10 ? `${names.slice(0, 10).join(', ')} and ${names.length - 10} more` : names.join(', ')}`
    return new NotFoundError(`no volume with id or path ${quoteGiven(ref)}, and volume ${of.path} has no snapshot ${quoteGiven(parts.snapshot)} (${has})`)
  }
  const is = `"${ref}" is snapshot ${parts.snapshot} of volume ${of.path}, and a snapshot is read-only`
  const instead = `vgrid vol clone ${of.path}@${parts.snapshot} NEWPATH makes a writable volume of it; vgrid vol snapshot rm ${of.path} ${parts.snapshot} removes it`
  return doing == null ? new NotFoundError(`no volume with id or path "${ref}": ${is} (${instead})`) : new ConflictError(`${is}: it cannot be ${doing} (${instead})`, 'read-only')
}

/**
 * A note when the volumes provision more than the pool has free (pure): each is thin and
 * was let in on its own size, so together they may promise more than the disks hold (a
 * tester made three of 140G x 2 against 293 GiB free without a word). Null when not.
 */
export function overProvisioned (volumes: Iterable<Volume>, pool: Pool): string | null {
  let provisioned = 0
  for (const v of volumes) provisioned += v.sizeBytes * v.replicas
  if (provisioned <= pool.freeBytes) return null
  return `the volumes now provision ${bytes(provisioned)} (sizes x replicas), more than the pool's ${bytes(pool.freeBytes)} free: they are thin, which is fine until that much is written; writes fail once a disk is full`
}

/** the draft of a new volume, or why not */
export function planCreate (req: CreateRequest, volumes: Iterable<Volume>, pool: Pool, newId: () => string = () => `vol-${randomBytes(6).toString('hex')}`): Draft<'volumes'> {
  const path = checkPath(req.path)
  const size = checkSize(req.size)
  const replicas = req.replicas == null ? Math.max(1, Math.min(DEFAULT_REPLICAS, pool.nodes)) : req.replicas
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 1 || replicas > MAX_REPLICAS) {
    throw new ValidationError('replicas', `replicas ${JSON.stringify(req.replicas)} must be a whole number from 1 to ${MAX_REPLICAS}`)
  }
  if (replicas > pool.nodes) throw new ValidationError('replicas', `replicas ${replicas} is more than the ${pool.nodes} live node(s) that can hold them`)
  const minReplicas = req.minReplicas ?? replicas
  if (typeof minReplicas !== 'number' || !Number.isInteger(minReplicas) || minReplicas < 1 || minReplicas > replicas) {
    throw new ValidationError('minReplicas', `the least copies a write needs (--min-replicas, minReplicas) ${JSON.stringify(req.minReplicas)} must be a whole number from 1 to the replicas (${replicas})`)
  }
  if (req.thin != null && typeof req.thin !== 'boolean') throw new ValidationError('thin', 'thin must be true or false')
  // refused rather than recorded and ignored: nothing would set the disk aside
  if (req.thin === false) throw new ValidationError('thin', 'thick provisioning (thin: false) is not implemented: a volume\'s objects take disk as they are written; a client provisions a range by writing it (NBD write-zeroes with NO_HOLE writes zeros as data)')
  if (size * replicas > pool.freeBytes) {
    throw new ValidationError('size', `${bytes(size)} x ${replicas} replicas is more than the pool's ${bytes(pool.freeBytes)} free`, 'too-large')
  }
  if (byPath(volumes, path) != null) throw new ConflictError(`a volume already has the path "${path}"`, 'exists')
  return { id: newId(), path, sizeBytes: size, replicas, minReplicas, thin: true, state: 'ready', parent: null, snapshots: {}, epoch: 1 }
}

/**
 * After a create, clone or rename gave `path` to volume `id`, with the volumes as they
 * are once a concurrent change had time to arrive: null when the volume keeps the path
 * (or was renamed or removed meanwhile: nothing of this request is left to undo), else
 * the holder (byPath) and, for a rename, whether its old path `was` is free to go back to.
 */
export function lostPath (volumes: Volume[], id: string, path: string, was?: string): { holder: string, back: boolean } | null {
  if (volumes.find(x => x.id === id)?.path !== path) return null
  const holder = byPath(volumes, path)
  if (holder == null || holder.id === id) return null
  return { holder: holder.id, back: was != null && byPath(volumes, was) == null }
}

/** a volume grows; it never shrinks (a filesystem on it would lose its tail) */
export function planResize (v: Volume, size: unknown, pool: Pool): number {
  const n = checkSize(size)
  if (n < v.sizeBytes) throw new ValidationError('size', `volume "${v.path}" is ${v.sizeBytes} bytes; shrinking to ${n} is refused (it would cut off data)`, 'shrink')
  if ((n - v.sizeBytes) * v.replicas > pool.freeBytes) throw new ValidationError('size', `growing "${v.path}" by ${bytes(n - v.sizeBytes)} x ${v.replicas} replicas is more than the pool's ${bytes(pool.freeBytes)} free`, 'too-large')
  return n
}

export function planRename (v: Volume, to: unknown, volumes: Iterable<Volume>): string {
  const path = checkPath(to, 'path')
  const other = byPath(volumes, path)
  if (other != null && other.id !== v.id) throw new ConflictError(`a volume already has the path "${path}"`, 'exists')
  return path
}

/**
 * The VMs that name a volume as a disk: `running` those that run or should (desired
 * running or hibernated, or still running by their lease: stopping is not stopped),
 * `stopped` the others (a stopped VM keeps its disks: it starts from them again).
 */
export function volumeUsers (v: Volume, vms: Iterable<Vm>, leases: Iterable<Lease> = []): { running: Vm[], stopped: Vm[] } {
  const live = new Set([...leases].filter(l => l.status === 'running' || l.status === 'starting' || l.status === 'stopping' || l.status === 'claimed').map(l => l.vm))
  const users = [...vms].filter(vm => vm.spec.volumes.includes(v.id) || vm.spec.volumes.includes(v.path))
  const runs = (vm: Vm): boolean => vm.desired !== 'stopped' || live.has(vm.id)
  return { running: users.filter(runs), stopped: users.filter(vm => !runs(vm)) }
}

/**
 * What each VM naming the volume is doing, as `vol info` says it (pure): its lease's
 * status when the lease is its own (a lease claimed for a former VM of its name is not),
 * else pending or stopped as desired; and the runs of removed VMs (or former VMs of a
 * name made again) that may still have it open, from their leases' `disks` (a tester saw
 * "used by VM g2 (running)" while g2 waited for the removed g1's run to end).
 */
export function volumeUse (v: Volume, vms: Iterable<Vm>, leases: Iterable<Lease>): { states: Map<string, string>, formerRuns: Array<{ vm: string, node: string }> } {
  const byVm = new Map([...leases].map(l => [l.vm, l]))
  const all = new Map([...vms].map(vm => [vm.id, vm]))
  const states = new Map<string, string>()
  for (const vm of all.values()) {
    if (!vm.spec.volumes.includes(v.id) && !vm.spec.volumes.includes(v.path)) continue
    const l = byVm.get(vm.id)
    states.set(vm.id, l != null && sameVm(l.made, vm.created) ? (l.status === 'claimed' || l.status == null ? 'starting' : l.status) : vm.desired === 'running' ? 'pending' : 'stopped')
  }
  const formerRuns = [...byVm.values()].filter(l => l.disks?.includes(v.id) === true && formerRun(l, all.get(l.vm))).map(l => ({ vm: l.vm, node: l.holder }))
  return { states, formerRuns }
}

const names = (vms: Vm[]): string => vms.map(u => `"${u.name}"`).join(', ')

function checkWriters (v: Volume, writers: readonly NodeWriters[]): void {
  const w = writers.filter(x => x.writers > 0)
  if (w.length > 0) {
    const onlyVms = w.every(x => (x.vmDisks ?? 0) >= x.writers)
    throw new ConflictError(`volume "${v.path}" is being written over NBD (${w.map(sayWriters).join(', ')}); ${onlyVms ? 'wait until the VM has stopped' : 'disconnect its writers first'}`, 'in-use')
  }
}

/**
 * Destroying a volume is refused (409 in-use) while any VM names it, running or not (a
 * stopped VM would fail at its next start, and a volume made again at the path is not
 * the one it names), or an NBD session on some node writes to it.
 */
export function checkDestroy (v: Volume, vms: Iterable<Vm>, leases: Iterable<Lease> = [], writers: readonly NodeWriters[] = []): void {
  const u = volumeUsers(v, vms, leases)
  // (bb52: the way out named was a vm rm, where a detach keeps the VM)
  const detach = (vms: Vm[]): string => vms.map(u => `vgrid vm update ${u.name} --detach ${v.path}`).join(', ')
  if (u.running.length > 0) throw new ConflictError(`volume "${v.path}" is in use by VM ${names(u.running)}; stop it and detach the volume (${detach(u.running)}), or remove the VM, first`, 'in-use')
  if (u.stopped.length > 0) throw new ConflictError(`volume "${v.path}" is a disk of VM ${names(u.stopped)} (stopped); detach it (${detach(u.stopped)}), or remove the VM, first`, 'in-use')
  checkWriters(v, writers)
}

/** the name `vgrid vol export` gives the snapshot it exports a volume in use from (export-holds.ts exportSnapshotName) */
export const EXPORT_SNAPSHOT = /^export-\d{8}T\d{6}-[a-z0-9]{1,8}$/

/**
 * A volume with snapshots is removed only when asked to remove them too (`withSnapshots`):
 * they are its backups, and go with it (rbd refuses likewise). The snapshots of exports
 * that are gone (`exports.abandoned`, export-holds.ts) are no backups: they go with it
 * unasked. Those of exports that run (`exports.running`) are said to be.
 */
export function checkSnapshotsGo (v: Volume, withSnapshots: boolean, exports: { abandoned?: readonly string[], running?: ReadonlyArray<{ name: string, node: string }> } = {}): void {
  const gone = new Set(exports.abandoned ?? [])
  const names = Object.values(v.snapshots).sort((a, b) => a.createdAt - b.createdAt).map(s => s.name).filter(n => !gone.has(n))
  if (names.length === 0) return
  const running = (exports.running ?? []).filter(x => names.includes(x.name))
  // bb33: --snapshots took the snapshot an export was copying from under it, and the
  // export's reads failed midway; ending that export is a choice of its own
  if (withSnapshots && running.length > 0) {
    throw new ConflictError(`volume "${v.path}" has ${running.length === 1 ? 'a snapshot' : 'snapshots'} a vgrid vol export is reading (${running.map(x => `${x.name} on ${x.node}`).join(', ')}): wait for ${running.length === 1 ? 'it' : 'them'} to end, or end ${running.length === 1 ? 'it' : 'each'} with vgrid vol snapshot rm ${v.path} ${running.length === 1 ? running[0]!.name : 'NAME'} (its copy then fails), and remove the volume again`, 'export_running')
  }
  if (withSnapshots) return
  const shown = names.length <= 5 ? names.join(', ') : `${names.slice(0, 5).join(', ')} and ${names.length - 5} more`
  const runningNote = running.length === 0 ? '' : `; ${running.map(x => `${x.name} is read by a vgrid vol export on ${x.node}`).join(', ')}, which removes it when it ends: wait for ${running.length === 1 ? 'it' : 'them'}`
  // an export of an earlier release recorded nothing of itself: one killed midway left its
  // snapshot, which nothing can tell from a user's (a tester's then blocked the rm)
  const left = names.filter(n => EXPORT_SNAPSHOT.test(n) && !running.some(x => x.name === n))
  // (bb50: a user's backup so named was called a leftover: it may be either)
  const leftNote = left.length === 0 ? '' : `; ${left.length === 1 ? `${left[0]!} is` : `${left.length} snapshots are`} named like an export's but record${left.length === 1 ? 's' : ''} no export: left by an interrupted export of an earlier release, or a user's own (vgrid vol snapshot rm ${v.path} ${left.length === 1 ? left[0]! : 'NAME'} removes ${left.length === 1 ? 'it' : 'each'})`
  throw new ConflictError(`volume "${v.path}" has ${names.length} snapshot${names.length === 1 ? '' : 's'} (${shown}), which would go with it: remove ${names.length === 1 ? 'it' : 'them'} first (vgrid vol snapshot rm), or remove the volume with ${names.length === 1 ? 'it' : 'them'} (vgrid vol rm ${v.path} --snapshots; over the API, DELETE with ?snapshots=true)${runningNote}${leftNote}`, 'has_snapshots')
}

/**
 * Renaming a volume is refused (409 in-use) while a VM runs from it or an NBD session
 * writes to it: their clients open it by its path (the export name), and one that
 * reconnects (after an agent restart) would find the old name gone. A stopped VM names
 * it by id: renaming its disk is fine.
 */
export function checkRename (v: Volume, vms: Iterable<Vm>, leases: Iterable<Lease> = [], writers: readonly NodeWriters[] = []): void {
  const u = volumeUsers(v, vms, leases)
  if (u.running.length > 0) throw new ConflictError(`volume "${v.path}" is in use by VM ${names(u.running)}, which opens it by its path; stop it first`, 'in-use')
  checkWriters(v, writers)
}

/** the object sets a volume reads through, top (written) first: its merged layers left out (layer-reclaim.ts) */
export const layersOf = (v: Volume): string[] => unmerged(v, v.layers ?? [v.id])

/** the object sets a snapshot of the volume reads through, top first (one taken before layers were kept: the volume's id) */
export const snapshotLayers = (v: Volume, s: Snapshot): string[] => unmerged(v, s.layers ?? [v.id])

/**
 * The layers no write may land in any more: those under a volume's top and those its
 * snapshots read (frozen-layers.ts). A clone's top is its own, never one of these.
 */
export function frozenLayersOf (volumes: readonly Volume[]): Set<string> {
  const tops = new Set(volumes.map(v => layersOf(v)[0]!))
  const frozen = new Set<string>()
  for (const v of volumes) {
    for (const l of layersOf(v).slice(1)) frozen.add(l)
    for (const s of Object.values(v.snapshots)) for (const l of snapshotLayers(v, s)) frozen.add(l)
  }
  for (const t of tops) frozen.delete(t)
  return frozen
}

const unmerged = (v: Volume, layers: string[]): string[] => v.merged == null ? layers : layers.filter(l => !Object.hasOwn(v.merged!, l))

/**
 * The most layers a volume reads through: a replica request names every layer under
 * the one it writes (replica-protocol.ts, a header of at most 4 KiB), and at about 178
 * the header no longer fits, so every remote read and write of the volume would fail.
 */
export const MAX_LAYERS = 128
export const placementKeyOf = (v: Volume): string => v.placementKey ?? v.id

/** a new snapshot's name: no "@", which separates it from its volume in VOL@SNAP */
const SNAPSHOT_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/

export function checkSnapshotName (name: unknown): string {
  if (name === undefined) throw new ValidationError('name', 'a snapshot name is required (name)')
  if (typeof name !== 'string' || !SNAPSHOT_NAME.test(name)) throw new ValidationError('name', `snapshot name ${JSON.stringify(name)} must be 1-128 letters, digits, ".", "_", ":" or "-", starting with a letter or digit`)
  return name
}

/**
 * VOL@SNAP split at its first "@": a path never holds one (a snapshot named with one by
 * an earlier release is still found). Null without an "@".
 */
export function splitSnapshotRef (ref: string): { volume: string, snapshot: string } | null {
  const at = ref.indexOf('@')
  return at <= 0 ? null : { volume: ref.slice(0, at), snapshot: ref.slice(at + 1) }
}

/**
 * A snapshot freezes the volume's current layers; the volume goes on writing to a new
 * top layer over them. Constant time: nothing is copied.
 */
export function planSnapshot (v: Volume, name: unknown, now: number): { snapshot: Omit<Snapshot, 'at' | 'by'>, layers: string[] } {
  const n = checkSnapshotName(name)
  if (snapshotOf(v, n) != null) throw new ConflictError(`volume "${v.path}" already has a snapshot "${n}"`, 'exists')
  const cur = layersOf(v)
  // a deleted snapshot's layer is folded into the one above it in the background, once a newer snapshot froze that one
  if (cur.length >= MAX_LAYERS) throw new ConflictError(`volume "${v.path}" reads through ${cur.length} layers, the most a volume may have (each snapshot kept adds one): delete snapshots it no longer needs (their layers are folded away within a minute or two, once another snapshot is taken over them) or copy it to a new volume (vgrid vol export, then vol import)`, 'too-many-layers')
  // its size too: a later resize grows the volume, not what the snapshot froze
  return { snapshot: { name: n, createdAt: now, layers: cur, sizeBytes: v.sizeBytes }, layers: [nextLayer(v), ...cur] }
}

/**
 * A layer's line and number: "VOL@N" -> {base: VOL, n: N}, a base layer "VOL" ->
 * {base: VOL, n: 0}. A snapshot's new top layer is numbered past every layer of its
 * line (volumes.ts nextLayer); a clone's "C@N" is of its own line C, never its source's.
 */
const LAYER_NAME = /\bvol-[0-9a-f]{12}(?:@[0-9]+)?\b/g

/**
 * A message with the names stores and replicas give object sets (`vol-…@N`, a volume's
 * id and layer number) said as users know them: a volume's path for its id or its top
 * layer, `path@snapshot` for a snapshot's own layer, `path layer N` for another of its
 * stack. A layer of a removed volume that a clone still reads is said as what that
 * clone was made from (a tester saw a bare `vol-…` id that answered not_found); other
 * names of no volume here stay as they are. `vols`: every volume, or a removed one
 * cannot be told from one left out.
 */
export function sayLayers (text: string, vols: readonly Volume[]): string {
  if (!text.includes('vol-')) return text
  return text.replace(LAYER_NAME, name => {
    const { base, n } = layerNumber(name)
    const v = vols.find(x => x.id === base)
    if (v == null) {
      const reader = vols.find(x => x.id !== base && layersOf(x).includes(name))
      return reader == null ? name : `the snapshot ${reader.path} was cloned from (its volume removed since)`
    }
    if (layersOf(v)[0] === name) return v.path
    // a snapshot's before the base: the volume's first layer is its first snapshot's once taken
    const snap = Object.values(v.snapshots).find(s => snapshotLayers(v, s)[0] === name)
    if (snap != null) return `${v.path}@${snap.name}`
    return name === base ? v.path : `${v.path} layer ${n}`
  })
}

/** a libp2p peer id as messages carry it (Ed25519 keys: 12D3KooW…; older RSA ones: Qm…) */
const PEER_ID = /\b(?:12D3KooW|Qm)[1-9A-HJ-NP-Za-km-z]{38,}\b/g

/**
 * A message with the peer ids that replicas' errors carry said as node names (`nameOf`:
 * a node's advert name, its id when it has none). Pure.
 */
export function sayNodes (text: string, nameOf: (id: string) => string): string {
  return text.replace(PEER_ID, id => nameOf(id))
}

export function layerNumber (layer: string): { base: string, n: number } {
  const m = /^(.+)@([0-9]+)$/.exec(layer)
  return m == null ? { base: layer, n: 0 } : { base: m[1]!, n: Number(m[2]) }
}

/**
 * The name of a volume's next top layer, "<id>@N": past every number the volume ever
 * used (merged layers leave its stack, and their names must not come back: a node may
 * still hold their objects).
 */
export function nextLayer (v: Volume): string {
  let n = 0
  const used = [...(v.layers ?? []), ...Object.keys(v.merged ?? {}), ...Object.values(v.snapshots).flatMap(s => s.layers ?? [])]
  for (const l of used) {
    const { base, n: k } = layerNumber(l)
    if (base === v.id && k > n) n = k
  }
  return `${v.id}@${n + 1}`
}

/** "VOL@SNAP" (VOL a path or id) -> the volume and its snapshot */
export function findSnapshot (volumes: Iterable<Volume>, ref: unknown): { volume: Volume, snapshot: Snapshot } {
  const parts = typeof ref === 'string' ? splitSnapshotRef(ref) : null
  if (parts == null) throw new ValidationError('from', `from ${JSON.stringify(ref)} must name a snapshot as VOLUME@SNAPSHOT`)
  // a name of any snapshot ever made (with "@" before this release): others name none
  if (!new RegExp(ID_PATTERN).test(parts.snapshot)) throw new ValidationError('from', `from ${JSON.stringify(ref)}: "${parts.snapshot}" is not a snapshot name`)
  const volume = findVolume(volumes, parts.volume)
  const snapshot = snapshotOf(volume, parts.snapshot)
  if (snapshot == null) throw new NotFoundError(`volume "${volume.path}" has no snapshot "${parts.snapshot}"`)
  return { volume, snapshot }
}

/** the size a snapshot was taken at (one taken before sizes were kept: its volume's) */
export const snapshotSize = (v: Volume, s: Snapshot): number => s.sizeBytes ?? v.sizeBytes

/** a clone: a writable volume over a snapshot's layers, made in constant time */
export function planClone (req: { path?: unknown, from?: unknown }, volumes: Iterable<Volume>, newId: () => string = () => `vol-${randomBytes(6).toString('hex')}`): Draft<'volumes'> {
  const all = [...volumes]
  const path = checkPath(req.path)
  const { volume: src, snapshot } = findSnapshot(all, req.from)
  if (byPath(all, path) != null) throw new ConflictError(`a volume already has the path "${path}"`, 'exists')
  const under = snapshotLayers(src, snapshot)
  if (under.length >= MAX_LAYERS) throw new ConflictError(`snapshot ${String(req.from)} reads through ${under.length} layers: a clone of it would be over the ${MAX_LAYERS} a volume may have`, 'too-many-layers')
  const id = newId()
  // the source's writes are in the layers the clone reads: where they went, it must hear from too
  const intervals = activeIntervals(src)
  // objects of the layers it reads that are recorded damaged on every copy: its own
  // record from the start (a tester's new clone showed healthy and failed its first read)
  const reads = new Set(under)
  const unsound = Object.fromEntries(all.flatMap(v => Object.entries(v.unsound ?? {})).filter(([k]) => reads.has(k.slice(0, k.lastIndexOf('/')))))
  return {
    id, path, sizeBytes: snapshotSize(src, snapshot), replicas: src.replicas, minReplicas: src.minReplicas ?? src.replicas, thin: true, state: 'ready', parent: src.id, snapshots: {}, epoch: 1,
    layers: [id, ...under], placementKey: placementKeyOf(src), ...(Object.keys(intervals).length > 0 ? { writeIntervals: intervals } : {}),
    ...(Object.keys(unsound).length > 0 ? { unsound } : {})
  }
}

/**
 * What a clone was made from, as users name it (pure): `PATH@SNAP` while its parent
 * and that snapshot are there (the snapshot's own layer is the one under the clone's
 * top), else what is left of it, so `vol info` shows no id that answers not_found.
 * Null for a volume that is no clone.
 */
export function cloneSource (v: Volume, vols: readonly Volume[]): string | null {
  if (v.parent == null) return null
  const parent = vols.find(x => x.id === v.parent)
  if (parent == null) return `a volume removed since (${v.parent})`
  const under = layersOf(v)[1]
  const snap = Object.values(parent.snapshots).find(s => snapshotLayers(parent, s)[0] === under)
  return snap != null ? `${parent.path}@${snap.name}` : `a snapshot of ${parent.path} removed since`
}

/**
 * How far each layer is read (bytes): the largest volume that reads it, itself or
 * through a snapshot (volumes only grow, so a snapshot reads no further than its
 * volume). An object past it is read by nothing, and nothing writes it: a write past a
 * volume's end is refused.
 */
export function layerEnds (volumes: Iterable<Volume>): Map<string, number> {
  const out = new Map<string, number>()
  const reach = (l: string, size: number): void => { out.set(l, Math.max(out.get(l) ?? 0, size)) }
  for (const v of volumes) {
    for (const l of layersOf(v)) reach(l, v.sizeBytes)
    for (const s of Object.values(v.snapshots)) for (const l of snapshotLayers(v, s)) reach(l, v.sizeBytes)
  }
  return out
}

/** every object set some volume or snapshot still reads: never freed */
export function referencedLayers (volumes: Iterable<Volume>): Set<string> {
  const out = new Set<string>()
  for (const v of volumes) {
    for (const l of layersOf(v)) out.add(l)
    for (const s of Object.values(v.snapshots)) for (const l of snapshotLayers(v, s)) out.add(l)
  }
  return out
}
