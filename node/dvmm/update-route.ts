// PATCH /v1/vms/:id (`vgrid vm update`): the request checked (vm-update.ts), written
// over the spec the write finds, and answered after one settle window, as a create is:
// the spec is one value to the document's conflict rule, so an update through another
// node at the same moment keeps one of the two, and the one dropped is told so.
import { VM_UPDATES_MAX, type Reader, type Vm, type Writer } from '../../crdt/index.ts'
import { canonical } from '../../crdt/conflicts.ts'
import { mayChangeRoll, sameVm, type NodeView } from '../../crdt/placement/index.ts'
import { ConflictError } from '../errors.ts'
import type { MemberTable } from '../../protocol/membership.ts'
import { diskOwners, diskTaken } from './disk-owner.ts'
import { appendLog, appendToLease, leaseReason } from './history.ts'
import { findVm, volumeLookup, type VmDetail, type VolumeLookup } from './vms.ts'
import { changeSummary, CLAIM_FIELDS, FLAG_OF, fieldChanged, olderAgents, runningUpdateWhy, runsForUpdate, terminalInUse, vmUpdateOf, type UpdateField } from './vm-update.ts'
import type { DocView } from './view.ts'

export interface UpdateRouteDeps {
  state: { read: () => Reader, write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T> }
  members: MemberTable
  me: string
  settleMs: number
  current: () => { reader: Reader, doc: DocView }
  nodesOf: (reader: Reader, doc: DocView) => NodeView[]
  nameOf: (id: string, doc?: DocView) => string
  inSight: (id: string) => boolean
  othersAlive: () => boolean
  schedule: () => void
  detail: (id: string) => Promise<VmDetail>
  /** a process VM's user checked on this node, as a create checks it (a 400 where this node may run it and has no such user) */
  userHere?: (spec: Vm['spec'], reader: Reader) => Promise<void>
  /** how long a node out of sight may still run its VMs (its fence timeout, notice and takeover margin since last heard; 0: passed) */
  fenceLeftMs?: (id: string) => number
}

/** whether `given` (paths or ids, as a client sent them) names the volumes `ids`, in order */
function sameList (given: unknown, ids: readonly string[], r: Reader): boolean {
  if (!Array.isArray(given) || given.length !== ids.length) return false
  const l = volumeLookup(r)
  return given.every((g, i) => typeof g === 'string' && (g === ids[i] || l.find(g)?.id === ids[i]))
}

/** volumes by path or id, a VM's own disks not "another VM's" */
const lookupFor = (r: Reader, vm: string): VolumeLookup => {
  const l = volumeLookup(r)
  return { find: l.find, usedBy: v => l.usedBy(v, vm) }
}

export function updateVmRoute (d: UpdateRouteDeps): (id: string, body: unknown) => Promise<VmDetail & { changed: UpdateField[] }> {
  return async (id, body) => {
    const { reader, doc } = d.current()
    const vm = findVm(doc, id)
    const first = vmUpdateOf(body, vm, d.nodesOf(reader, doc), lookupFor(reader, vm.id))
    if (first.changed.length === 0) return { ...await d.detail(vm.id), changed: [] }
    // a new user, or constraints that now let this node run it: its user looked for here
    if (first.changed.includes('user') || first.changed.includes('constraints')) await d.userHere?.(first.spec, reader)
    const may = mayChangeRoll({ roll: doc.roll.keys(), me: d.me, alive: d.inSight, joining: false })
    if (!may.ok) throw new ConflictError(`${may.reason}: an update written here could be undone by one made on the other side meanwhile; update it through a node that sees one`, 'no_majority')
    // a holder out of sight: how long its run there may go on (read before the write)
    const holder = doc.leases.get(vm.id)?.winner.holder
    const awayLeftMs = holder != null && holder !== d.me && !d.inSight(holder) ? d.fenceLeftMs?.(holder) ?? Infinity : undefined
    // on the spec the write finds (another field changed meanwhile through another node is
    // kept), checked again there: a volume removed or made another's disk meanwhile, a start
    const u = await d.state.write(w => {
      const now = w.reader.get('vms', vm.id)?.value
      if (now == null || now.created !== vm.created) throw new ConflictError(`VM "${vm.name}" was removed${now != null ? ', and made again,' : ''} through another node while this update waited: nothing was changed`, 'removed_meanwhile')
      const again = vmUpdateOf(body, now, d.nodesOf(w.reader, doc), lookupFor(w.reader, vm.id))
      // the list of volumes the client made its --attach/--detach from: another update's meanwhile is not undone (rv55)
      const were = (body as { volumesWere?: unknown }).volumesWere
      // likewise the terminals the client made its --input/--output from
      for (const f of ['inputs', 'outputs'] as const) {
        const had = (body as Record<string, unknown>)[`${f}Were`]
        if (had !== undefined && JSON.stringify(had) !== JSON.stringify(now.spec[f] ?? [])) throw new ConflictError(`the ${f} of VM "${vm.name}" were changed through another node meanwhile (now ${(now.spec[f] ?? []).join(', ') || 'none'}): nothing was changed; run the update again`, 'changed_meanwhile')
      }
      if (were !== undefined && !sameList(were, now.spec.volumes, w.reader)) throw new ConflictError(`the volumes of VM "${vm.name}" were changed through another node meanwhile (now ${now.spec.volumes.map(v => w.reader.get('volumes', v)?.value.path ?? v).join(', ') || 'none'}): nothing was changed; run the update again`, 'changed_meanwhile')
      // an agent of an earlier release runs a VM with its spec's size, whatever its lease reserved
      const placement = again.changed.filter(f => CLAIM_FIELDS.includes(f))
      const older = placement.length > 0 ? olderAgents(d.members) : []
      if (older.length > 0) throw new ConflictError(`${older.join(', ')} ${older.length === 1 ? 'runs' : 'run'} an earlier release of vgrid, which could start VM "${vm.name}" as it was claimed before this update and with its new ${placement.map(f => FLAG_OF[f]).join(' and ')}: change ${placement.length === 1 ? 'it' : 'them'} once every node runs this release (labels, the restart policy and what it boots change now)`, 'upgrade_pending')
      // a terminal a link uses goes only with the link
      const inUse = again.changed.includes('inputs') || again.changed.includes('outputs') ? terminalInUse(vm.id, now.created, again.spec, w.reader.list('connections')) : null
      if (inUse != null) throw new ConflictError(inUse, 'terminal_in_use')
      const l = w.reader.get('leases', vm.id)?.value
      const lease = l == null ? undefined : { status: l.status, parked: l.parked, own: sameVm(l.made, now.created), ...(l.holder !== d.me && !d.inSight(l.holder) ? { awayLeftMs: l.holder === holder ? awayLeftMs ?? Infinity : Infinity } : {}) }
      if (l != null && runsForUpdate(again.changed, lease)) throw new ConflictError(runningUpdateWhy(vm.name, d.nameOf(l.holder, doc), again.changed, lease), 'vm_running')
      const paths = new Map([...now.spec.volumes, ...again.spec.volumes].map(v => [v, w.reader.get('volumes', v)?.value.path ?? v]))
      // stamped: of two updates written at once, the later is read (conflicts.ts latestSpec)
      const spec = { ...again.spec, updatedAt: w.at }
      if (again.changed.length > 0) {
        // in its history: the node named is the one it went through; the epoch, of its lease where it has one
        const detail = leaseReason(changeSummary(now.spec, again.spec, again.changed, v => paths.get(v) ?? v))
        const own = l != null && sameVm(l.made, now.created) ? { epoch: l.epoch } : {}
        const event = { at: w.at, event: 'updated', node: d.me, ...own, detail }
        // kept with the update itself (the VM's `updates`), and in its lease's log for agents of earlier releases
        w.update('vms', vm.id, { spec, updates: appendLog(w.current('vms', vm.id)?.updates, [event], VM_UPDATES_MAX) })
        appendToLease(w, vm.id, () => event, l => sameVm(l.made, now.created))
      }
      return { ...again, spec, before: now.spec, paths }
    }, `vm update ${vm.id}`)
    d.schedule()
    if (u.changed.length > 0 && d.othersAlive()) await settle(d, vm, body, u)
    return { ...await d.detail(vm.id), changed: u.changed }
  }
}

/**
 * After one settle window: the update's fields as it wrote them, on the VM it wrote
 * them to, or a 409 saying what happened; a volume it attached that another node removed,
 * or made the disk of a VM made first (disk-owner.ts), at the same moment: taken back.
 */
async function settle (d: UpdateRouteDeps, vm: Vm, body: unknown, u: { spec: Vm['spec'], before: Vm['spec'], changed: UpdateField[], paths: ReadonlyMap<string, string> }): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, d.settleMs))
  const reader = d.state.read()
  const now = reader.get('vms', vm.id)?.value
  if (now == null || now.created !== vm.created) throw new ConflictError(`VM "${vm.name}" was removed${now != null ? ', and made again,' : ''} through another node at the same moment: this update went with it`, 'removed_meanwhile')
  // it holds where asking it again would change nothing (another update of other labels,
  // made over this one, keeps it); one that cannot be asked again holds in the fields the
  // spec still has as it wrote them (rv56: a command line asked of a VM another update
  // gave an image is refused, and was answered 200); a volume it attached that is gone
  // is seen to below
  let lost: UpdateField[]
  try {
    lost = vmUpdateOf(body, now, d.nodesOf(reader, d.current().doc), lookupFor(reader, vm.id)).changed
  } catch {
    lost = u.changed.filter(f => fieldChanged(f, now.spec, u.spec))
  }
  if (lost.length > 0) {
    // which of it holds, said: a script must not read the 409 as "nothing happened" (bb52)
    const held = u.changed.filter(f => !lost.includes(f))
    throw new ConflictError(`VM "${vm.name}" was updated at the same moment through another node, whose ${lost.map(f => FLAG_OF[f]).join(', ')} ${lost.length === 1 ? 'value was' : 'values were'} kept, not this update's${held.length > 0 ? ` (its ${held.map(f => FLAG_OF[f]).join(', ')} ${held.length === 1 ? 'is' : 'are'} as this update asked)` : ''}: look at it (vgrid vm show ${vm.name}) and update it again`, 'changed_meanwhile')
  }
  const added = u.spec.volumes.filter(v => !u.before.volumes.includes(v))
  if (added.length === 0) return
  const why = await d.state.write(w => {
    const cur = w.reader.get('vms', vm.id)?.value
    if (cur == null || canonical(cur.spec) !== canonical(u.spec)) return null
    const path = (v: string): string => u.paths.get(v) ?? v
    const gone = added.find(v => w.reader.get('volumes', v) == null)
    const taken = diskTaken(cur, diskOwners(w.reader.list('vms')))
    const lost = gone != null
      ? { code: 'volume_removed', message: `volumes: ${path(gone)} was removed through another node at the same moment` }
      : taken != null && added.includes(taken.volume) ? { code: 'volume_in_use', message: `volumes: ${path(taken.volume)} was made a disk of VM "${taken.owner.name}" at the same moment through another node; that one keeps it (made first)` } : null
    if (lost == null) return null
    w.update('vms', vm.id, { spec: { ...u.before, updatedAt: w.at } })
    return lost
  }, `vm update ${vm.id} taken back: a volume it attached is gone, or another VM's disk`)
  if (why != null) throw new ConflictError(`${why.message}: this update of VM "${vm.name}" was taken back, nothing of it is kept`, why.code)
}
