// DVMM's HTTP API: /v1/vms (create, list, show, start, stop, rm, console), node drain,
// undrain and forget, and /v1/ha. Writes answer once the change is on disk; what
// happens next (placement, start) is decided by the agents and shown by `show`.
import type { FastifyInstance } from 'fastify'
import type { Reader, Vm } from '../../crdt/index.ts'
import { diskOwners, diskTaken } from './disk-owner.ts'
import { canonical } from '../../crdt/conflicts.ts'
import { idle, mayChangeDesired, mayChangeRoll, missingLabels, restartPending, strandedWhy, type HaReport, type StrandedVms } from '../../crdt/placement/index.ts'
import { ConflictError, NotFoundError, ValidationError, booleanQuery, countQuery, flag, noBody, onlyFields, optionalBody, quoteGiven } from '../errors.ts'
import type { Writer } from '../../crdt/index.ts'
import type { Logger } from '../log.ts'
import { expandShortId, mayBeRunning, memberByName, type MemberTable } from '../../protocol/membership.ts'
import type { VmInfo } from './drivers/types.ts'
import type { ConsoleSince } from './drivers/console-read.ts'
import type { ConsoleAnswer } from './console.ts'
import { appendToLease, type History } from './history.ts'
import type { DiskHealth } from './vm-disks.ts'
import { forgetInIntervals, namedInIntervals } from '../gvs/write-intervals.ts'
import { OBJECT_SIZE } from '../gvs/placement.ts'
import { awaitsPlacement, docView, nodeViews, type DocView } from './view.ts'
import { fencedKillCause } from './run-steps.ts'
import { userOnNode } from './host/users.ts'
import { cutLinkNote } from './overlay-moves.ts'
import { crowdedGroups } from './spread.ts'
import { keepsVm, vmFilterOf, VM_FILTER_QUERY } from './vm-filter.ts'
import { updateVmRoute } from './update-route.ts'
import { createVmIn, findVm, lostReason, lostVms, placementNow, removeVmIn, setDesiredIn, vmDraft, vmRow, volumeIds, volumeLookup, type LostVm, type VmDetail, type VmRow } from './vms.ts'

/** how long `vm ls` waits for its running VMs' disk health; past it the rows go without (vm show waits for it) */
export const LIST_HEALTH_WAIT_MS = 1000

interface IdParams { id: string }
// longer than any id or name (a VM's name is at most 63, an id 128): a too-long one is looked up and not found, not refused as "more than 128 characters"
const idParams = { type: 'object', properties: { id: { type: 'string', minLength: 1, maxLength: 4096 } }, required: ['id'] }

export type HaView = HaReport

/** how long a drain waits for the roll entry of a member that is alive here (rollEntryOf) */
const ROLL_ENTRY_WAIT_MS = 10_000

/** What the routes use of the DVMM service (a narrow view, so the service and its routes do not import each other). */
export interface DvmmRoutesDeps {
  readonly components: {
    state: { read: () => Reader, write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T> }
    membership: { readonly members: MemberTable }
    log?: Pick<Logger, 'warn'>
  }
  readonly me: string
  /** how long a create waits for one of the same name made at the same moment elsewhere to arrive (the claims' settle window) */
  readonly nameSettleMs?: number
  readonly history: History
  /** a node's name, also of one no longer a member (forgotten) */
  nameOf?: (id: string) => string
  /** how long the VMs of a node stopped for a restart may still run there (0: none) */
  restartGraceLeftMs?: (id: string) => number
  /** how long a node not alive may still run its VMs (its fence timeout, notice and the takeover margin from when this node last heard it, as a takeover waits; 0: passed) */
  fenceLeftMs?: (id: string) => number
  /** how long the watchdog of a node stopped for a restart may still keep its VMs running there (0: it has killed them) */
  restartWatchdogLeftMs?: (id: string) => number
  /** how long a vote lock (a member back from a restart) still holds this node's takeovers back (0: none) */
  voteLockHoldsMs?: () => number
  /** a member's clock offset from this node's past the bound (its history events are shown in this node's time) */
  clockOffsetOf?: (id: string) => number | undefined
  schedule: () => void
  ha: () => HaReport
  /** what draining a node would strand, with every node draining now leaving too */
  drainCheck?: (node: string, leaving?: ReadonlySet<string>) => StrandedVms[]
  /** VMs this node would take over but cannot, with the reason: shown as pending */
  readonly blocked?: ReadonlyMap<string, string>
  /** the NBD sessions writing a volume on each live node (absent: no volume store here) */
  volumeWriters?: (volumeId: string) => Promise<Array<{ node: string, name?: string, writers: number, vmDisks?: number }>>
  /** the volumes' health (absent: no volume store here) */
  volumeHealth?: (volumeIds: string[]) => Promise<ReadonlyMap<string, DiskHealth>>
  /** this node's fence now: without a majority, a dead node's VMs wait for one; fenced, its own were killed */
  readonly fenceState?: { majority: boolean, fenced?: boolean, lent?: number, reason: string }
  /** this node's VMs (local-vms.ts) */
  readonly local: {
    /** the VM's overlay address, where the grid has an overlay */
    addressOf: (vm: string) => string | null
    /** VMs running, starting or stopping here */
    readonly live: ReadonlySet<string>
    /** VMs this node's drivers run */
    readonly runs?: ReadonlySet<string>
    /** why a VM that ended here is left stopped, while its lease's update waits for the disk */
    unwrittenEnd?: (vm: string) => string | undefined
    /** the tail of a VM's console, from its holder wherever it is */
    console: (vm: string, since?: ConsoleSince) => Promise<{ holder: string } & ConsoleAnswer>
    /** the driver's view of a VM this node runs (pid, interfaces, accelerator), null elsewhere */
    runtimeOf: (vm: string) => Promise<VmInfo | null>
  }
}

export function dvmmRoutes (svc: DvmmRoutesDeps) {
  const { state, membership } = svc.components
  const nameOf = (id: string, doc?: DocView): string => membership.members.get(id)?.advert.name ?? doc?.roll.get(id)?.name ?? svc.nameOf?.(id) ?? id
  const current = (): { reader: Reader, doc: DocView } => {
    const reader = state.read()
    return { reader, doc: docView(reader) }
  }
  const nodesOf = (reader: Reader, doc: DocView): ReturnType<typeof nodeViews> => nodeViews(doc, membership.members, n => reader.labelsOf(n), svc.me)
  /** other members that may be writing at the same moment (alive or suspect): a settle window is waited for only then */
  const othersAlive = (): boolean => [...membership.members.values()].some(m => m.nodeId !== svc.me && (m.state === 'alive' || m.state === 'suspect'))
  /** a run of the VM on a node whose agent is away (stopped for a restart, or not heard from): it goes on until that agent is back or its watchdog ends it */
  const awayRun = (doc: DocView, vm: string, why: string): { node: string, name: string, why: string } | undefined => {
    const l = doc.leases.get(vm)?.winner
    if (l == null || idle(l) || l.holder === svc.me || membership.members.get(l.holder)?.state === 'alive') return undefined
    return { node: l.holder, name: nameOf(l.holder, doc), why: `its agent is away: the VM runs there until that agent is back and stops it, or its watchdog ends it${why}` }
  }
  /** in a vm stop's write: the lease's history says the stop was asked while its holder was away (only that holder writes its run's transitions) */
  const logAwayStop = (w: Writer, vm: string, away: { node: string, name: string }, via: string): void => {
    // stamped as the holder's clock would (vm show takes a holder's offset off its events)
    const at = Math.floor(Date.now() + (svc.clockOffsetOf?.(away.node) ?? 0))
    const detail = `asked through ${via} while the agent of ${away.name} was away: its run there ends once that agent is back and stops it, or its watchdog ends it`
    appendToLease(w, vm, l => ({ at, event: 'stopped', node: away.node, name: away.name, epoch: l.epoch, detail }), l => l.holder === away.node && l.status === 'running')
  }
  /** a node by id or name: a member, or an entry of the roll */
  const findNode = (doc: DocView, given: string): { id: string, name: string } => {
    const idOrName = expandShortId(given, [...membership.members.keys(), ...doc.roll.keys()])
    const m = membership.members.get(idOrName) ?? memberByName(membership.members.values(), idOrName, id => doc.roll.has(id))
    // a member that may be running, or one on the roll; else the roll's entry of that name (a member this node never heard)
    if (m != null && (mayBeRunning(m.state) || doc.roll.has(m.nodeId))) return { id: m.nodeId, name: m.advert.name }
    const e = doc.roll.get(idOrName) ?? [...doc.roll.values()].find(x => x.name === idOrName)
    if (e == null && m != null) return { id: m.nodeId, name: m.advert.name }
    if (e != null) return { id: e.node, name: e.name }
    throw new NotFoundError(`no node with id or name ${quoteGiven(idOrName, 128)}`)
  }
  /**
   * The node a forget means: as findNode, but a name given to two identities (a server
   * reinstalled under its old name) means the one that is gone, on the roll and not
   * alive here, not the new one running (the README's advice led to "is alive").
   */
  const findForgettable = (doc: DocView, given: string): { id: string, name: string } => {
    const idOrName = expandShortId(given, [...membership.members.keys(), ...doc.roll.keys()])
    if (!membership.members.has(idOrName) && !doc.roll.has(idOrName)) {
      const gone = [...doc.roll.values()].filter(e => e.name === idOrName && !mayBeRunning(membership.members.get(e.node)?.state))
      if (gone.length === 1) return { id: gone[0]!.node, name: gone[0]!.name }
      // a node that left long ago, which only the volumes' records of where their writes
      // went still name (by id: the error that sends the operator here names it so)
      if (namedInIntervals(state.read().list('volumes'), idOrName)) return { id: idOrName, name: idOrName }
    }
    return findNode(doc, idOrName)
  }
  /** what every row of one answer reads: the nodes, and the VMs whose holder is not alive (`only`: of that VM) */
  const rowContext = (reader: Reader, doc: DocView, only?: string): { nodes: ReturnType<typeof nodeViews>, lost: ReadonlyMap<string, LostVm> } => {
    const nodes = nodesOf(reader, doc)
    return { nodes, lost: new Map(lostVms(doc, nodes, only, id => nameOf(id, doc), svc.restartGraceLeftMs == null ? undefined : id => svc.restartGraceLeftMs!(id) > 0).map(l => [l.vm, l])) }
  }
  const row = (doc: DocView, id: string, ctx: ReturnType<typeof rowContext>): VmRow => {
    const vm = findVm(doc, id)
    const l = doc.leases.get(vm.id)
    const pending = awaitsPlacement(vm, l) ? placementNow(vm, doc, ctx.nodes).pending : null
    const r = vmRow(vm, l, n => nameOf(n, doc), pending)
    // waiting to be placed, asked of a node that claims nothing without a majority: say so (a tester read only "waiting for a claim to settle")
    const fence = svc.fenceState
    if (r.state === 'pending' && fence != null && !fence.majority) return { ...r, reason: `${r.reason ?? 'waiting to be placed'}; this node ${fence.reason}, and places nothing until it sees one (a node that does may place it)` }
    const lost = ctx.lost.get(vm.id)
    if (lost != null) {
      // bb42: "may run on there under its watchdog" went on after the watchdog had killed it
      const restart = lost.restarting === true && svc.restartGraceLeftMs != null && svc.restartWatchdogLeftMs != null
        ? { watchdogLeftMs: svc.restartWatchdogLeftMs(lost.node), leftMs: svc.restartGraceLeftMs(lost.node) }
        : undefined
      return { ...r, state: 'unknown', reason: lostReason(lost, svc.fenceState?.majority === false ? svc.fenceState.reason : undefined, svc.voteLockHoldsMs?.() ?? 0, restart) }
    }
    // stopped on request while its node is not alive: nobody is left to write the stop,
    // and the run there ends with that node's fence (its watchdog, or its own fence)
    if (r.state === 'stopping' && vm.desired === 'stopped' && l != null && ctx.nodes.find(n => n.id === l.winner.holder)?.alive !== true) {
      // a node stopped for a restart: its watchdog keeps the VM running through the grace,
      // and its agent, back, stops it then (or the watchdog kills it at the grace's end)
      const restart = doc.roll.get(l.winner.holder)?.restart
      // counted on this node's clock from when it last heard the node (its stamp may run off ours)
      const left = restart == null ? 0 : svc.restartGraceLeftMs?.(l.winner.holder) ?? (restartPending(restart, Date.now()) ? restart.since + restart.fenceMs - Date.now() : 0)
      if (left > 0) {
        return { ...r, reason: `its node ${nameOf(l.winner.holder, doc)} stopped for a restart: the VM runs there until its agent is back and stops it, or, if it is not back, until its watchdog kills it, within ${Math.ceil(left / 1000)} s` }
      }
      // seen from a side without a majority, the holder may be alive on the other, where
      // this stop has not arrived: whether its run ended is not known here (rv53)
      if (svc.fenceState?.majority === false) return { ...r, reason: `its node ${nameOf(l.winner.holder, doc)} is not in sight of this node, which ${svc.fenceState.reason}: the stop reaches it once this node is back with the majority, and whether its run there has ended is not known here` }
      // still within that node's fence: its run may go on until then (bb51: `vm stop --wait` ended while it ran)
      const fenceLeft = svc.fenceLeftMs?.(l.winner.holder) ?? 0
      if (fenceLeft > 0) return { ...r, reason: `its node ${nameOf(l.winner.holder, doc)} is not alive: its run there ends with that node's fence${Number.isFinite(fenceLeft) ? `, within ${Math.ceil(fenceLeft / 1000)} s` : ''}` }
      return { ...r, state: 'stopped', reason: `its node ${nameOf(l.winner.holder, doc)} is not alive: its run there was ended by that node's fence, its fence timeout past since its last sign of life (the lease stays with it until the VM is started again)` }
    }
    // killed by its node's fence, as that node's lease says (read here on its side of a
    // cut): not running, and not starting until that node sees a majority (a tester read
    // `starting` here while its holder said `stopped`)
    const fencedCause = l != null && l.winner.holder !== svc.me && r.state === 'starting' ? fencedKillCause(l.winner.reason) : null
    if (fencedCause != null) return { ...r, state: 'stopped', reason: `killed on ${nameOf(l!.winner.holder, doc)}: ${fencedCause}; it starts again there once that node sees a majority of the grid, unless the majority has taken it over meanwhile` }
    // starting on another node while this one sees no majority: that node, on this side
    // too as like as not, starts it only once it sees one (bb43: "restarting in 1 s" for
    // 20 s on every node of a side without a majority, while its own node said fenced)
    if (fence != null && !fence.majority && l != null && l.winner.holder !== svc.me && r.state === 'starting') {
      return { ...r, reason: `${r.reason != null ? `${r.reason}; ` : ''}this node ${fence.reason}: ${nameOf(l.winner.holder, doc)} starts it only while it sees a majority of the grid, which it may not either` }
    }
    // on this node while it sees no majority: its VMs were killed (or are once its fence
    // timeout passes) and start only once a majority is in sight, here or elsewhere
    const f = svc.fenceState
    if (f != null && !f.majority && l?.winner.holder === svc.me && vm.desired === 'running' && (r.state === 'starting' || r.state === 'running')) {
      // fenced: its run here was killed (the document cannot say so: this node writes
      // nothing it cannot sync), so it is stopped here, not starting
      if (f.fenced === true && !svc.local.live.has(vm.id)) return { ...r, state: 'stopped', reason: `this node ${f.reason}: it is fenced, and killed its VMs when its fence timeout passed; they start again once a majority of the grid is in sight (here, or elsewhere if the others take them over)` }
      if ((f.lent ?? 0) > 0) return { ...r, reason: `this node ${f.reason}` }
      return { ...r, reason: `this node ${f.reason}: its VMs are killed once its fence timeout passes, and start again once a majority of the grid is in sight (here, or elsewhere if the others take them over)` }
    }
    // this node's own VMs while the document refuses its writes (a full disk): what it
    // knows, over what the lease still says
    if (l?.winner.holder === svc.me && (r.state === 'running' || r.state === 'starting')) {
      const ended = svc.local.unwrittenEnd?.(vm.id)
      if (ended != null) return { ...r, state: 'stopped', reason: `${ended} (not in the document yet: its write waits for room on this node's data disk)` }
      if (r.state === 'starting' && l.winner.status === 'starting' && svc.local.runs?.has(vm.id) === true) return { ...r, state: 'running', reason: null }
    }
    const blocked = svc.blocked?.get(vm.id)
    return blocked == null || vm.desired !== 'running' ? r : { ...r, state: 'pending', reason: blocked }
  }
  /** a running VM with a link across a partial cut says so, and whether it moves (bb44); after its disks' and labels' word */
  const withCutLinks = (doc: DocView, r: VmRow, ctx: ReturnType<typeof rowContext>): VmRow => {
    if (r.state !== 'running' || r.reason != null || !ctx.nodes.some(n => (n.unreached?.length ?? 0) > 0)) return r
    const cut = cutLinkNote(r.id, doc, ctx.nodes, doc.peers?.get(r.id) ?? [], n => nameOf(n, doc))
    return cut == null ? r : { ...r, reason: cut }
  }
  /**
   * A running VM where its constraints no longer hold (a label taken off its node): it
   * stays, as placement is not revisited while a VM runs, but says so (a tester found it
   * only in vm show's "if it were placed now"); after its disks' word, which matters more
   */
  const withLabels = (doc: DocView, r: VmRow, ctx: ReturnType<typeof rowContext>): VmRow => {
    const holder = doc.leases.get(r.id)?.winner.holder
    const labels = r.state === 'running' && r.reason == null && holder != null ? ctx.nodes.find(n => n.id === holder)?.labels : undefined
    const unmet = labels == null ? [] : missingLabels(doc.vms.get(r.id)?.spec.constraints ?? {}, labels)
    return unmet.length === 0 ? r : { ...r, reason: `its node ${nameOf(holder!, doc)} no longer has label ${unmet.join(', ')}, which it requires: it runs on there (a running VM is not moved); stop and start it to place it where ${unmet.length === 1 ? 'that holds' : 'they hold'}` }
  }
  /** the health of the running VMs' disks (none where no volume store runs, or it cannot say) */
  const disksHealth = async (doc: DocView, rows: VmRow[], waitMs = Infinity): Promise<ReadonlyMap<string, DiskHealth>> => {
    const ids = [...new Set(rows.filter(r => r.state === 'running').flatMap(r => doc.vms.get(r.id)?.spec.volumes ?? []))]
    if (svc.volumeHealth == null || ids.length === 0) return new Map()
    const asked = svc.volumeHealth(ids).catch(() => new Map<string, DiskHealth>())
    if (!Number.isFinite(waitMs)) return await asked
    // a list does not wait out a holder that hangs (its inventory times out in 3 s, a
    // coordinator's answer in 5: bb20's vm ls took 3-5 s after a SIGSTOP); the ask goes
    // on, and what it learns is there for the next one
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<ReadonlyMap<string, DiskHealth>>(resolve => { timer = setTimeout(() => { resolve(new Map()) }, waitMs) })
    try { return await Promise.race([asked, late]) } finally { clearTimeout(timer) }
  }
  /**
   * A running VM whose disk is not healthy says so: it runs on, but a disk whose only
   * copies were on a dead node fails its reads and writes (a tester saw plain "running").
   */
  const withDisks = (reader: Reader, doc: DocView, r: VmRow, health: ReadonlyMap<string, DiskHealth>): VmRow => {
    if (r.state !== 'running' || r.reason != null) return r
    for (const v of doc.vms.get(r.id)?.spec.volumes ?? []) {
      const h = health.get(v)
      if (h == null || h.state === 'healthy') continue
      return { ...r, reason: `its disk ${reader.get('volumes', v)?.value.path ?? v} is ${h.state}${h.reasons.length > 0 ? `: ${h.reasons[0]!}` : ''} (vgrid vol info)` }
    }
    return r
  }
  /**
   * Anti-affinity is a preference (a group's VMs on different nodes where possible): a
   * running VM that shares its node with one of its group says so, or the preference
   * broken is seen nowhere but in the scores of vm show (a tester); and which nodes could
   * take it now with none of its group (bb47: after a rolling maintenance it said none
   * could, and two empty nodes could), which a stop and a start gives it.
   */
  const withGroup = (doc: DocView, rows: VmRow[], ctx: ReturnType<typeof rowContext>): VmRow[] => {
    const crowded = crowdedGroups(doc, ctx.nodes)
    if (crowded.length === 0) return rows
    return rows.map(r => {
      const c = r.reason != null ? undefined : crowded.find(x => x.node === r.nodeId && x.vms.includes(r.id))
      if (c == null) return r
      const mates = c.vms.filter(id => id !== r.id).map(id => doc.vms.get(id)?.name ?? id)
      const could = (c.could.get(r.id) ?? []).map(n => nameOf(n, doc))
      const then = could.length === 0
        ? ' (a preference: no node without one of its group can take it now)'
        : `; ${could.length <= 3 ? could.join(', ') : `${could.slice(0, 3).join(', ')} and ${could.length - 3} more`} could take it now with none of its group: vgrid vm stop ${r.name}, then vgrid vm start ${r.name}, places it anew (it restarts)`
      return { ...r, reason: `shares node ${r.node ?? r.nodeId} with ${mates.join(', ')} of its anti-affinity group ${c.group}${then}` }
    })
  }
  /**
   * No VM `id`: a 404 that says when a removed VM of the name still stops on a node that
   * may be running it (code `still_stopping`, as a create of the name is refused then),
   * so `vm rm --wait` can tell the name free from the run still ending.
   */
  const findOrStopping = (doc: DocView, id: string): Vm => {
    try { return findVm(doc, id) } catch (err) {
      const l = doc.leases.get(id)?.winner
      const state = l == null ? undefined : l.holder === svc.me ? 'alive' : membership.members.get(l.holder)?.state
      if (l == null || idle(l)) throw err
      // a node stopped for a restart keeps its VMs running under its watchdog (rv51: said gone meanwhile)
      const graceMs = state === 'alive' || state === 'suspect' ? 0 : svc.restartGraceLeftMs?.(l.holder) ?? 0
      if (state !== 'alive' && state !== 'suspect' && !(graceMs > 0)) throw err
      const how = state === 'alive' ? 'is still stopping its run' : state === 'suspect' ? 'holds its run and has not been heard from for a moment' : `stopped for a restart with its run going on: its agent, back, stops it, or its watchdog kills it within ${Math.ceil(graceMs / 1000)} s`
      throw new NotFoundError(`no VM "${id}": it was removed, and ${nameOf(l.holder, doc)} ${how} (lease epoch ${l.epoch}, ${l.status ?? 'claimed'})`, 'still_stopping')
    }
  }
  const detail = async (id: string): Promise<VmDetail> => {
    const { reader, doc } = current()
    const vm = findOrStopping(doc, id)
    const l = doc.leases.get(vm.id)
    const d = svc.history.decisions.get(vm.id)
    const ctx = rowContext(reader, doc, vm.id)
    const own = row(doc, vm.id, ctx)
    const health = await disksHealth(doc, [own])
    return {
      ...withGroup(doc, [withCutLinks(doc, withLabels(doc, withDisks(reader, doc, own, health), ctx), ctx)], ctx)[0]!,
      // when this VM of the name was made: a wait tells it from one made again under the name (bb51)
      created: vm.created ?? null,
      address: svc.local.addressOf(vm.id),
      runtime: l?.winner.holder === svc.me ? await svc.local.runtimeOf(vm.id) : null,
      spec: vm.spec,
      disks: vm.spec.volumes.map(v => {
        const h = health.get(v)
        return { id: v, path: reader.get('volumes', v)?.value.path ?? null, ...(h != null ? { state: h.state, reasons: h.reasons } : {}) }
      }),
      lease: l?.winner ?? null,
      claims: l?.claims.length ?? 0,
      placement: placementNow(vm, doc, ctx.nodes),
      // the ranking this agent claimed it by, kept while the lease is this node's (History.observe)
      decision: d == null ? null : { at: new Date(d.at).toISOString(), ranking: d.ranking },
      history: svc.history.of(vm.id, n => nameOf(n, doc), vm.created, n => svc.clockOffsetOf?.(n), vm.updates).map(e => ({ ...e, at: new Date(e.at).toISOString() })),
      historyUnreadable: svc.history.unreadable(vm.id)
    }
  }
  /** a member this node sees (alive or suspect): what counts towards its majority for a change */
  const inSight = (id: string): boolean => mayBeRunning(membership.members.get(id)?.state)
  /**
   * A start, stop or rm written on a node cut off from the majority takes effect only once
   * it sees one again: the VM's holder on the majority side does not see it meanwhile
   * (bb49: `vm stop` through such a node answered "stopped" while the VM ran on until
   * the heal). Refused, as a create is there, naming where to ask.
   */
  const refuseWithoutMajority = (doc: DocView, what: 'start' | 'stop' | 'rm', vm: string): void => {
    // (mayChangeDesired: a stop or rm of a VM this node holds is taken where no other side can have taken its lease)
    const may = mayChangeDesired({ roll: doc.roll.keys(), me: svc.me, alive: inSight, joining: false, what, holder: doc.leases.get(vm)?.winner.holder })
    if (!may.ok) throw new ConflictError(`${may.reason}: a ${what} written here would take effect only once this node sees one again (nodes on the other side do not see it meanwhile); ${what} it through a node that sees a majority`, 'no_majority')
  }
  const setDesired = async (id: string, desired: 'running' | 'stopped'): Promise<VmDetail & { stillRuns?: { node: string, name: string, why: string } }> => {
    const { reader, doc } = current()
    const vm = findVm(doc, id)
    refuseWithoutMajority(doc, desired === 'running' ? 'start' : 'stop', vm.id)
    // a disk removed (at the same moment as the VM was made, before bb35's fix; or a VM of
    // an earlier release): it would fail three starts and be left stopped
    const gone = desired === 'running' ? vm.spec.volumes.find(v => reader.get('volumes', v) == null) : undefined
    if (gone != null) throw new ConflictError(`its disk ${gone} was removed: VM "${vm.name}" cannot run without it; remove the VM (vgrid vm rm ${vm.name}) and create it again with a volume that exists`, 'volume_removed')
    if (desired === 'running' && vm.desired !== 'running') await notWrittenOverNbd(vm)
    // a stop of a VM whose holder's agent is away (killed, not yet found dead) takes effect
    // only when that agent is back or its watchdog ends the VM: said, as vm rm says it
    // (bb36: "now stopped" while it ran on for seconds)
    const away = desired === 'stopped' ? awayRun(doc, vm.id, '') : undefined
    // starting a VM left failed or stopped (crash rule, stopped on request) places it afresh
    await state.write(w => {
      // its history says so (once: read before this write's own change): the away holder writes nothing until it is back, if ever (bb36)
      if (away != null && w.reader.get('vms', vm.id)?.value.desired === 'running') logAwayStop(w, vm.id, away, nameOf(svc.me, doc))
      setDesiredIn(w, vm.id, desired)
    }, `vm ${desired === 'running' ? 'start' : 'stop'} ${vm.id}`)
    svc.schedule()
    return { ...await detail(vm.id), ...(away != null ? { stillRuns: away } : {}) }
  }
  /**
   * A VM is not started (nor created running) while a plain NBD client writes one of its
   * volumes (an import, say): its holder's fence would take the disk from the client
   * midway, which then fails, and the VM would boot a half-written disk (a tester).
   */
  const notWrittenOverNbd = async (vm: Pick<Vm, 'name' | 'spec'>): Promise<void> => {
    if (svc.volumeWriters == null) return
    for (const id of vm.spec.volumes) {
      // plain clients only: the VM's own disk session, its QEMU still stopping, is no other writer
      const w = (await svc.volumeWriters(id)).map(x => ({ ...x, plain: x.writers - (x.vmDisks ?? 0) })).filter(x => x.plain > 0)
      if (w.length === 0) continue
      // read again: the reader asked for does not outlast the wait above
      const path = state.read().get('volumes', id)?.value.path ?? id
      throw new ConflictError(`its disk ${path} is being written over NBD (${w.map(x => `${x.plain} session${x.plain === 1 ? '' : 's'} on ${x.name ?? x.node}`).join(', ')}: an import, an export's client, or another NBD client): starting VM "${vm.name}" now would take the disk from it midway; wait until it ends, or disconnect it`, 'volume_in_use')
    }
  }
  /**
   * A node's roll entry reaches the others a moment after it is alive there (CI drained
   * a node that had joined a second before: 404): a drain of a member alive here but
   * not yet on this node's roll waits for its entry, up to ROLL_ENTRY_WAIT_MS.
   */
  const rollEntryOf = async (n: { id: string }): Promise<boolean> => {
    const alive = (): boolean => inSight(n.id)
    if (current().doc.roll.has(n.id) || !alive()) return current().doc.roll.has(n.id)
    const until = Date.now() + ROLL_ENTRY_WAIT_MS
    while (!current().doc.roll.has(n.id) && alive() && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 200))
    return current().doc.roll.has(n.id)
  }
  const setDraining = async (idOrName: string, draining: boolean, force = false): Promise<{ node: string, name: string, draining: boolean, vms: string[] }> => {
    const n = findNode(current().doc, idOrName)
    if (!await rollEntryOf(n) && inSight(n.id)) {
      throw new ConflictError(`node ${n.name} is alive but its entry on the member roll has not reached this node within ${ROLL_ENTRY_WAIT_MS / 1000} s (it joined a moment ago, or this node's copy of the document lags): try again in a moment`, 'not_on_roll_yet')
    }
    const { doc } = current()
    // a drain stops the node's VMs so that they start elsewhere: VMs no other node fits
    // would just stop. Refused unless asked for (a node that must go down anyway)
    // (asked again of a node already draining, e.g. to wait: nothing new is stopped)
    // a node cut off from the majority would answer "draining" for a change that takes
    // effect only once it sees one again (bb34: exit 0, nothing moved until the heal)
    const may = mayChangeRoll({ roll: doc.roll.keys(), me: svc.me, alive: inSight, joining: false })
    if (!may.ok) throw new ConflictError(`${may.reason}: a ${draining ? 'drain' : 'undrain'} written here would take effect only once this node sees one again (no VM is placed or moved meanwhile, by either); ${draining ? 'drain' : 'undrain'} ${n.name} through a node that sees a majority`, 'no_majority')
    const again = doc.roll.get(n.id)?.draining === true
    const check = draining && !force && !again
    // with the nodes draining now leaving too (bb36: two drains, each fine alone, stranded a VM)
    const strands = check ? (svc.drainCheck?.(n.id) ?? svc.ha().stranded.filter(s => s.node === n.id)) : []
    const strandsSaid = (ss: typeof strands): string => ss.map(s => s.node === n.id ? strandedWhy(s) : `${strandedWhy(s)} of draining node ${s.name}`).join(', ')
    const them = (ss: typeof strands): string => ss.reduce((k, s) => k + s.vms.length, 0) === 1 ? 'it' : 'them'
    if (strands.length > 0) throw new ConflictError(`draining ${n.name} would stop ${strandsSaid(strands)} with nowhere else to run: make room, or drain it anyway to stop ${them(strands)} (\`vgrid node drain ${n.name} --force\`, or {"force": true} in the request)`, 'would_strand')
    const drainedAt = await state.write(w => {
      const e = w.reader.get('roll', n.id)
      if (e == null) throw new NotFoundError(`node ${n.name} is not on the member roll`)
      // the drain's start is kept while it lasts (asked again, e.g. to wait, it is the same drain)
      // (a forced one begins anew: an unforced request's undo, settling meanwhile, must not take it back: rv40)
      const at = draining ? (e.value.draining === true && !force ? e.value.drainedAt ?? w.at : w.at) : null
      w.update('roll', n.id, { draining, drainedAt: at })
      return at
    }, `node ${draining ? 'drain' : 'undrain'} ${n.name}`)
    svc.schedule()
    if (check && drainedAt != null) await settleDrain(n, drainedAt, strandsSaid, them)
    // what the drain moves: VMs that run there (a stopped or failed one's lease reserves nothing, and it is placed anew when started)
    return { node: n.id, name: n.name, draining, vms: [...current().doc.leases.values()].filter(l => l.winner.holder === n.id && l.winner.status !== 'stopped' && l.winner.status !== 'failed').map(l => l.winner.vm) }
  }

  /**
   * A drain checked what it strands on this node's copy of the roll: another node may
   * have begun a drain at the same moment, each fine alone and not both (bb36: a VM
   * stopped with nowhere to run, both answered "draining"). Once such a change had time
   * to arrive, every node takes the drains in the order they began (then by node id),
   * keeping each that strands nothing together with those kept before it; this drain,
   * if not kept, is undone and answered 409 (rv40: undoing the latest of all let an
   * unrelated later drain be undone while the two that stranded a VM stood).
   */
  const settleDrain = async (n: { id: string, name: string }, drainedAt: number, said: (ss: StrandedVms[]) => string, them: (ss: StrandedVms[]) => string): Promise<void> => {
    if (svc.drainCheck == null || !othersAlive()) return
    await new Promise(resolve => setTimeout(resolve, svc.nameSettleMs ?? 1500))
    const roll = state.read().list('roll').filter(e => e.draining === true)
      .sort((a, b) => (a.drainedAt ?? 0) - (b.drainedAt ?? 0) || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0))
    const kept = new Set<string>()
    let strands: StrandedVms[] = []
    for (const e of roll) {
      const ss = svc.drainCheck(e.node, kept)
      if (ss.length === 0) kept.add(e.node)
      else if (e.node === n.id) strands = ss
    }
    if (kept.has(n.id) || strands.length === 0) return
    const undone = await state.write(w => {
      const e = w.reader.get('roll', n.id)?.value
      if (e?.draining !== true || e.drainedAt !== drainedAt) return false
      w.update('roll', n.id, { draining: false, drainedAt: null })
      return true
    }, `node drain ${n.name}: undone, it strands VMs with the drains begun with it`)
    svc.schedule()
    const others = [...kept].map(id => svc.nameOf?.(id) ?? id)
    const withWhat = others.length > 0 ? ` together with the drain${others.length === 1 ? '' : 's'} of ${others.join(', ')} (begun before it, or through another node at the same moment)` : ' (the grid changed while it settled)'
    if (undone) throw new ConflictError(`draining ${n.name}${withWhat} would stop ${said(strands)} with nowhere else to run: this drain was undone; make room, or drain it anyway to stop ${them(strands)} (\`vgrid node drain ${n.name} --force\`)`, 'would_strand')
  }

  /**
   * whether the VM of the name is this create's: by what the create gave (spec and
   * application), or, once a `vm update` changed its spec (stamped), by when it was made
   * (rv55: an update through another node within the window read as another create)
   */
  const sameCreate = (now: Vm, made: Vm): boolean => now.spec.updatedAt != null ? now.created === made.created : canonical([now.spec, now.app]) === canonical([made.spec, made.app])
  /**
   * A VM's name is its key: another node may have created one of the same name at the
   * same moment (each checks only its own copy of the document), and the document then
   * keeps one by its latest-write rule. Likewise a VM with one of the same volumes as
   * its disk. Once such a change had time to arrive, the request whose VM lost is
   * answered 409, not 201 for a spec that is gone or a VM that would never run. Alone on
   * the grid there is nobody to race with.
   */
  const settleCreate = async (made: Vm, paths: ReadonlyMap<string, string>): Promise<void> => {
    if (!othersAlive()) return
    await new Promise(resolve => setTimeout(resolve, svc.nameSettleMs ?? 1500))
    // by what the create gave (spec and application): the VM's own later writes (its
    // overlay index, a start or stop) change at, by and desired
    const now = state.read().get('vms', made.id)?.value
    if (now != null && !sameCreate(now, made)) {
      throw new ConflictError(`a VM named "${made.id}" was created at the same moment through another node; that one was kept, this one dropped`, 'name_in_use')
    }
    // a VM made through another node at the same moment with one of its volumes as its
    // disk: the first made keeps it (disk-owner.ts), and this one goes, answered 409
    // (it would never be placed; both were placed and wrote the disk at once before)
    if (now == null || made.spec.volumes.length === 0) return
    const why = await state.write(w => {
      const vm = w.reader.get('vms', made.id)?.value
      if (vm == null || !sameCreate(vm, made)) return null
      // a volume removed through another node at the same moment (bb35: both answered,
      // and the VM crashed three times on a disk that did not exist)
      const gone = vm.spec.volumes.find(v => w.reader.get('volumes', v) == null)
      if (gone != null) {
        removeVmIn(w, made.id)
        return { code: 'volume_removed', message: `volumes: ${paths.get(gone) ?? gone} was removed through another node at the same moment; this VM, whose disk it was to be, was removed` }
      }
      const taken = diskTaken(vm, diskOwners(w.reader.list('vms')))
      if (taken == null) return null
      removeVmIn(w, made.id)
      return { code: 'volume_in_use', message: `volumes: ${w.reader.get('volumes', taken.volume)?.value.path ?? taken.volume} was made a disk of VM "${taken.owner.name}" at the same moment through another node; that one keeps it (made first), and this VM was removed` }
    }, `vm create ${made.id}: its disk is another VM's, or gone`)
    if (why != null) throw new ConflictError(why.message, why.code)
  }

  return (app: FastifyInstance): void => {
    app.get('/v1/vms', { config: { query: VM_FILTER_QUERY } }, async (req): Promise<{ vms: VmRow[] }> => {
      const given = vmFilterOf(req.query)
      const { reader, doc } = current()
      // a node as every command takes one: its name, id or the short id `vgrid nodes` shows; one of none is a 404, not an empty list
      const filter = given.node == null ? given : { ...given, node: findNode(doc, given.node).id }
      const ctx = rowContext(reader, doc)
      const rows = [...doc.vms.keys()].sort().map(id => row(doc, id, ctx)).filter(r => keepsVm(filter, r, doc.vms.get(r.id)?.spec.labels))
      const health = await disksHealth(doc, rows, LIST_HEALTH_WAIT_MS)
      return { vms: withGroup(doc, rows.map(r => withCutLinks(doc, withLabels(doc, withDisks(reader, doc, r, health), ctx), ctx)), ctx) }
    })
    /** a process VM's user, where this node is one it may run on: one this node has */
    const userHere = async (spec: Vm['spec'], reader: Reader): Promise<void> => {
      if (spec.user != null && missingLabels(spec.constraints, reader.labelsOf(svc.me)).length === 0 && await userOnNode(spec.user) === 'missing') {
        throw new ValidationError('user', `user: there is no user "${spec.user}" on this node (${svc.nameOf?.(svc.me) ?? svc.me}): a process VM runs as a user of whichever node runs it, so give one every node it may run on has`)
      }
    }
    app.post('/v1/vms', async (req, reply): Promise<VmDetail> => {
      const { reader, doc } = current()
      const draft = vmDraft(req.body, doc, nodesOf(reader, doc), undefined, volumeLookup(reader))
      // its disks' paths, to name one removed meanwhile (this reader does not outlast a write)
      const paths = new Map(draft.spec.volumes.map(v => [v, reader.get('volumes', v)?.value.path ?? v]))
      // a node cut off from the majority would acknowledge a VM that the other side may
      // also create under the same name meanwhile: the merge after healing keeps one,
      // and the other, long answered 201, would be gone without a word. Nothing could
      // place it here anyway (no claims without a majority). Judged now, on the roll and
      // the members as they are (the last step's fence may predate the others' arrival).
      const may = mayChangeRoll({ roll: doc.roll.keys(), me: svc.me, alive: inSight, joining: false })
      if (!may.ok) throw new ConflictError(`${may.reason}: a VM created here could collide with one of the same name created on the other side, and could not be placed until it sees a majority; create it through a node that sees one`, 'no_majority')
      if (draft.desired === 'running') await notWrittenOverNbd(draft)
      // a user no node has failed three starts wherever it was placed (bb41): this node's
      // users stand for the grid's where the VM may run here (its labels match), as a
      // process VM may run on any such node; a node it may not run on is not asked (rv44)
      await userHere(draft.spec, reader)
      const made = await state.write(w => {
        if (w.reader.get('vms', draft.id) != null) throw new ConflictError(`a VM named "${draft.id}" already exists`, 'name_in_use')
        // again on what the write finds: a volume removed, or taken by a VM created, while an earlier write waited
        volumeIds(draft.spec.volumes, draft.spec.driver, volumeLookup(w.reader))
        // a former VM of the name still stopping on a live node: not taken over by this one
        return createVmIn(w, draft, id => {
          const m = membership.members.get(id)
          const name = m?.advert.name ?? (id === svc.me ? 'this node' : id)
          return id === svc.me || m?.state === 'alive' ? name : m?.state === 'suspect' ? { name, suspect: true } : null
        })
      }, `vm create ${draft.id}`)
      svc.schedule()
      await settleCreate(made, paths)
      void reply.code(201)
      return await detail(draft.id)
    })
    app.get<{ Params: IdParams }>('/v1/vms/:id', { schema: { params: idParams } }, async req => await detail(req.params.id))
    app.post<{ Params: IdParams }>('/v1/vms/:id/start', { schema: { params: idParams } }, async req => { noBody(req.body); return await setDesired(req.params.id, 'running') })
    app.post<{ Params: IdParams }>('/v1/vms/:id/stop', { schema: { params: idParams } }, async req => { noBody(req.body); return await setDesired(req.params.id, 'stopped') })
    const updateVm = updateVmRoute({ state, members: membership.members, me: svc.me, settleMs: svc.nameSettleMs ?? 1500, current, nodesOf, nameOf, inSight, othersAlive, schedule: () => { svc.schedule() }, detail, userHere, ...(svc.fenceLeftMs != null ? { fenceLeftMs: svc.fenceLeftMs.bind(svc) } : {}) })
    app.patch<{ Params: IdParams }>('/v1/vms/:id', { schema: { params: idParams } }, async req => await updateVm(req.params.id, req.body))
    app.delete<{ Params: IdParams }>('/v1/vms/:id', { schema: { params: idParams } }, async req => {
      const { doc } = current()
      const vm = findVm(doc, req.params.id)
      refuseWithoutMajority(doc, 'rm', vm.id)
      // its links, and its lease if nothing runs under it, go with it (removeVmIn)
      const links = await state.write(w => removeVmIn(w, vm.id), `vm rm ${vm.id}`)
      svc.schedule()
      // a run on a node whose agent is away (stopped for a restart, or not heard from)
      // goes on until that agent is back and stops it, or its watchdog ends it: said, as
      // `vm stop` says it (a tester read "removed" as gone, while the guest ran on)
      const l = doc.leases.get(vm.id)?.winner
      const disks = vm.spec.volumes.length > 0
      const away = awayRun(doc, vm.id, disks ? '; its disks go to no other VM until then' : '')
      // one that runs: it is gone from vm ls at once, while its guest gets its stop grace (bb29)
      const stopping = l != null && !idle(l) && away == null
      return { removed: vm.id, links, ...(away != null ? { stillRuns: away } : {}), ...(stopping ? { stopping: { node: l.holder, name: nameOf(l.holder, doc), disks } } : {}) }
    })
    // a console holds what the guest prints (passwords at first boot, keys): root and the
    // vgrid group only, as the console file on the node is root's
    // `from` and `run` (a follower's last end and the run it read): only what came since,
    // unless the log was cut back or the run is another one (then the tail; `start` says)
    app.get<{ Params: IdParams, Querystring: { from?: unknown, run?: unknown } }>('/v1/vms/:id/console', { schema: { params: idParams }, config: { access: 'admin', query: ['from', 'run'] } }, async (req): Promise<{ vm: string, node: string, console: string, start?: number, size?: number, run?: number, epoch?: number }> => {
      const from = countQuery(req.query, 'from')
      const run = countQuery(req.query, 'run')
      if (run != null && from == null) throw new ValidationError('run', 'run goes with from: the offset read up to in that run')
      const { doc } = current()
      const vm = findVm(doc, req.params.id)
      const c = await svc.local.console(vm.id, from != null ? { from, run: run ?? null } : undefined)
      // the offsets the text begins and ends at, the run's start and the lease's epoch: what `vm console --follow` reads by
      const epoch = doc.leases.get(vm.id)?.winner.epoch
      return { vm: vm.id, node: nameOf(c.holder, doc), console: c.console, ...(c.start != null ? { start: c.start } : {}), ...(c.size != null ? { size: c.size } : {}), ...(c.run != null ? { run: c.run } : {}), ...(epoch != null ? { epoch } : {}) }
    })
    app.post<{ Params: IdParams }>('/v1/nodes/:id/drain', { schema: { params: idParams } }, async req => {
      const b = optionalBody(req.body)
      onlyFields(b, ['force'])
      return await setDraining(req.params.id, true, flag(b, 'force', false))
    })
    app.post<{ Params: IdParams }>('/v1/nodes/:id/undrain', { schema: { params: idParams } }, async req => { noBody(req.body); return await setDraining(req.params.id, false) })
    app.delete<{ Params: IdParams, Querystring: { force?: unknown, withoutMajority?: unknown } }>('/v1/nodes/:id/roll', { schema: { params: idParams }, config: { query: ['force', 'withoutMajority'] } }, async req => {
      const force = booleanQuery(req.query, 'force')
      const withoutMajority = booleanQuery(req.query, 'withoutMajority')
      const { doc } = current()
      const n = findForgettable(doc, req.params.id)
      const m = membership.members.get(n.id)
      if (m != null && (m.state === 'alive' || m.state === 'suspect')) throw new ConflictError(`node ${n.name} is ${m.state}: forget is for a server that is gone for good`, 'node_alive')
      // its roll entry holds the restart grace the others wait for before taking its VMs
      // over: forgetting it now would start them elsewhere while they still run there
      const graceMs = svc.restartGraceLeftMs?.(n.id) ?? 0
      if (graceMs > 0) throw new ConflictError(`node ${n.name} stopped for a restart and its restart grace holds ${Math.ceil(graceMs / 1000)} s more (its VMs, if any, may run there that long): forget is for a server that is gone for good; if it does not come back, forget it after that (its VMs are taken over then in any case)`, 'node_restarting')
      // only from the majority side: a node cut off must not forget the others away;
      // unless the operator says the members out of sight are gone for good (half a grid
      // lost for good had no way back: the grid stayed fenced), as Proxmox's `pvecm expected`
      const may = mayChangeRoll({ roll: doc.roll.keys(), me: svc.me, alive: id => membership.members.get(id)?.state === 'alive', joining: false })
      if (!may.ok && !withoutMajority) throw new ConflictError(`${may.reason}: forget only from a node that sees a majority of the roll. If the members this node cannot see are gone for good (not cut off: a side of a partition that still runs would then run the same VMs and volumes as this one), forget them one by one from here with --without-majority until this node sees a majority; then bring new servers in`, 'no_majority')
      if (!may.ok) svc.components.log?.warn('a member forgotten without a majority in sight, on the operator\'s word that the members out of sight are gone for good', { node: n.name, id: n.id, seen: may.reason })
      // gone for good: the writes the volumes may have kept only on it are given up
      // (gvs/write-intervals.ts), and recorded on them for good; only when asked to, as
      // an object with no copy left reads as zeros from then on (a tester's forget turned
      // a volume's data into zeros without a word, and the volume then read healthy)
      const gaveUp = await state.write(w => {
        // a node that left the roll (a graceful leave) may still be waited for by the
        // volumes it took writes of: forgetting it gives those up (bb28: not_found)
        const named = namedInIntervals(w.reader.list('volumes'), n.id)
        const onRoll = w.remove('roll', n.id)
        if (!onRoll && !named) return null
        const given = forgetInIntervals(w, n.id, OBJECT_SIZE, n.name)
        if (given.length > 0 && !force) throw new ConflictError(`forgetting ${n.name} gives up writes that may be only on it, of ${given.length === 1 ? 'volume' : 'volumes'} ${given.join(', ')}: an object with no copy left on the other nodes reads as zeros from then on. If ${n.name} can come back, bring it back instead; to forget it all the same: vgrid node forget ${n.name} --force`, 'writes_only_there')
        return { given, onRoll }
      }, `node forget ${n.name}`)
      if (gaveUp == null) throw new NotFoundError(`node ${n.name} is not on the member roll`)
      svc.schedule()
      // wasOnRoll false: it had left the roll already, and only the volumes' records still named it
      return { forgotten: n.id, name: n.name, wasOnRoll: gaveUp.onRoll, writesGivenUp: gaveUp.given, ...(may.ok ? {} : { withoutMajority: true }) }
    })
    app.get('/v1/ha', async (): Promise<HaView> => svc.ha())
  }
}
