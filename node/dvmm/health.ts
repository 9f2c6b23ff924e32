// DVMM's HA and health answers, read from the document and the member table (the
// decisions are pure: haCheck, lostVms, unplacedVms): AppLogic's "HA ok" for `vgrid ha`
// and /v1/ha, the VMs that run nowhere, the problems /v1/status shows (VMs that run
// nowhere, this node without a majority of the roll or fenced), and the VMs this node
// would take over but cannot (shown as pending).
import type { Reader } from '../../crdt/index.ts'
import { diskRisks, idle, isParked, noMajorityMargin, type FenceDecision, type HaReport, type NodeView, type Strategy } from '../../crdt/placement/index.ts'
import type { MemberTable } from '../../protocol/membership.ts'
import type { HealthProblem } from '../api/types.ts'
import type { Logger } from '../log.ts'
import type { Decisions } from './decide.ts'
import { docView, haOf, nodeViews, type DocView } from './view.ts'
import { lostVms, unplacedVms, type LostVm } from './vms.ts'
import { guestHeld } from './drivers/types.ts'
import { escapeControls } from './control-chars.ts'
import { anyCould, crowdedGroups } from './spread.ts'

export interface DvmmHealthComponents {
  peerId: string
  log: Logger
  state: { read: () => Reader }
  membership: { readonly members: MemberTable }
  /** this node's fence as last judged (undefined before the first judgement) */
  fence: () => FenceDecision | undefined
  /** a node's name, also of one no longer a member */
  nameOf?: (id: string) => string
  /** whether a node stopped for a restart may still run its VMs (DvmmService.restartGraceLeftMs), counted on this node's clock */
  restarting?: (id: string) => boolean
}

export class DvmmHealth {
  private readonly c: DvmmHealthComponents
  private readonly strategy: Strategy
  /** VMs this node would take over but cannot (Decisions.blocked), with the reason: shown as pending (routes) */
  readonly blocked = new Map<string, string>()

  constructor (components: DvmmHealthComponents, strategy: Strategy) {
    this.c = components
    this.strategy = strategy
  }

  /**
   * AppLogic's "HA ok": could every VM with a lease be placed again if any one node
   * failed? Not ok either while VMs of a node already lost fit on no live node.
   */
  ha (): HaReport {
    const reader = this.c.state.read()
    const base = haOf(reader, this.c.membership.members, this.c.peerId, this.strategy)
    const now = this.viewOf(reader)
    const unplaced = this.unplaced(now)
    const r = unplaced.length === 0 ? base : { ...base, ok: false, unplaced }
    // without a majority in sight nothing lost is taken over, whether it fits or not
    const f = this.c.fence()
    const noMajority = f != null && (!f.majority || f.fenced) ? f.reason : undefined
    const lost = noMajority != null ? lostVms(now.doc, now.nodes, undefined, this.c.nameOf, this.c.restarting).map(l => ({ ...l, fitsNowhere: l.fitsNowhere ?? 'no majority of the grid in sight to take it over' })) : this.stranded(now, true)
    // with VMs to keep running, or volumes to keep serving (both need a majority in
    // sight), the grid must also keep a majority through one more loss: a grid with
    // volumes and no VM said HA ok with one of three members dead (a tester)
    const keep = [...now.doc.vms.values()].some(v => v.desired === 'running') || reader.list('volumes').length > 0
    const restarting = reader.list('roll').filter(e => this.c.membership.members.get(e.node)?.state !== 'alive' && this.c.restarting?.(e.node) === true).length
    const margin = noMajority == null && f != null && keep ? noMajorityMargin(f.rollSize, f.aliveSeen, restarting) : null
    // what one more loss would strand is not judged from a side without a majority: its
    // alive nodes are not the grid's (a cut-off node said losing itself strands a VM the
    // majority had already run elsewhere)
    const r1 = noMajority != null ? { ...r, ok: false, noMajority, stranded: [] } : margin != null ? { ...r, ok: false, noMargin: margin } : r
    const disks = noMajority != null ? [] : diskRisks([...now.doc.vms.values()], new Map(reader.list('volumes').map(v => [v.id, v])), now.nodes.filter(n => n.alive).length)
    const r2a = disks.length > 0 ? { ...r1, ok: false, disks } : r1
    // crowded anti-affinity groups where another node could take one now (bb47)
    const crowded = noMajority != null ? [] : crowdedGroups(now.doc, now.nodes).map(c => ({ c, could: anyCould(c) })).filter(x => x.could.length > 0)
    const name = (id: string): string => this.c.nameOf?.(id) ?? now.nodes.find(n => n.id === id)?.name ?? id
    const r2 = crowded.length === 0 ? r2a : { ...r2a, crowded: crowded.map(({ c, could }) => ({ group: c.group, node: name(c.node), vms: c.vms.map(id => now.doc.vms.get(id)?.name ?? id), could: could.map(name) })) }
    if (lost.length === 0) return r2
    const byNode = new Map<string, LostVm[]>()
    for (const l of lost) byNode.set(l.node, [...byNode.get(l.node) ?? [], l])
    return { ...r2, ok: false, lost: [...byNode].map(([node, ls]) => ({ node, name: ls[0]!.nodeName, vms: ls.map(l => l.name), reasons: ls.map(l => l.fitsNowhere!), reason: ls[0]!.fitsNowhere!, ...(ls[0]!.restarting === true ? { restarting: true as const } : {}) })) }
  }

  /**
   * VMs whose holder is not alive and that no live node fits: they run nowhere
   * (lostVms). Those of a node stopped for a restart run on under its restart grace:
   * not stranded (yet); `restarting` keeps them (for the HA check: they would be, should
   * it not come back).
   */
  stranded (v = this.viewOf(), restarting = false): LostVm[] {
    return lostVms(v.doc, v.nodes, undefined, this.c.nameOf, this.c.restarting).filter(l => l.fitsNowhere != null && (restarting || l.restarting !== true))
  }

  /** VMs that should run, hold no lease, and that no node fits now (unplacedVms) */
  unplaced (v = this.viewOf()): Array<{ vm: string, reason: string }> {
    return unplacedVms(v.doc, v.nodes)
  }

  /**
   * for /v1/status: VMs that run nowhere (their node is gone and none other fits them,
   * or none fits them at all), and this node without a majority of the roll (it claims
   * and takes over nothing: a dead node's VMs wait, and once fenced its own are killed)
   */
  problems (): HealthProblem[] {
    const out: HealthProblem[] = []
    const now = this.viewOf()
    const f = this.c.fence()
    // without a majority in sight, the others (which may run and fit these VMs) look
    // dead from here: what runs nowhere is not known here, and no-majority says why
    const blind = f != null && (!f.majority || f.fenced)
    const lost = blind ? [] : this.stranded(now)
    if (lost.length > 0) out.push({ service: 'dvmm', cause: 'vms-stranded', message: `${lost.length} VM(s) run nowhere: their node is not alive and no other node fits them: ${lost.map(l => `${l.name} (on ${l.nodeName}: ${l.fitsNowhere})`).join('; ')}` })
    const unplaced = blind ? [] : this.unplaced(now)
    if (unplaced.length > 0) out.push({ service: 'dvmm', cause: 'vms-unplaced', message: `${unplaced.length} VM(s) should run and run nowhere, no node fits them: ${unplaced.map(u => `${u.vm} (${u.reason})`).join('; ')}` })
    // left so by the crash rule (crashes, or starts that failed): they should run and do not,
    // until started again. One that exited cleanly and whose policy leaves it so completed
    const left = [...now.doc.vms.values()].filter(vm => vm.desired === 'running').flatMap(vm => {
      const w = now.doc.leases.get(vm.id)?.winner
      return w != null && !isParked(w) && w.completed !== true && idle(w) ? [`${vm.name} (${w.reason ?? w.status})`] : []
    })
    if (left.length > 0) out.push({ service: 'dvmm', cause: 'vms-failed', message: `${left.length} VM(s) should run and were left stopped or failed (the crash rule, or their restart policy); \`vgrid vm start\` runs them again: ${left.join('; ')}` })
    // running, but QEMU paused the guest after a disk error: frozen until its disk takes the write
    const paused = [...now.doc.vms.values()].flatMap(vm => {
      const w = now.doc.leases.get(vm.id)?.winner
      return w?.status === 'running' && guestHeld(w.reason) ? [`${vm.name} (${w.reason!})`] : []
    })
    if (paused.length > 0) out.push({ service: 'dvmm', cause: 'vms-paused', message: `${paused.length} VM(s) run no more though their process does: ${paused.join('; ')}` })
    // a stop now would cost its VMs their run (bb43: a rolling stop of a rack): said where they are
    const runsHere = [...now.doc.leases.values()].some(l => l.winner.holder === this.c.peerId && (l.winner.status === 'running' || l.winner.status === 'starting'))
    if (blind) out.push({ service: 'dvmm', cause: f.fenced ? 'fenced' : 'no-majority', message: f.fenced ? `fenced: ${f.reason}; this node's VMs were killed and it places none` : (f.lent ?? 0) > 0 ? `this node ${f.reason}; it fences itself once their grace has passed without a majority back${runsHere ? '. Stopping this agent now gets it no restart grace (no majority to confirm one): the VMs it runs would be killed by its watchdog within its usual timeout (3/5 of the fence timeout) of the stop, and started again when it is back' : ''}` : `this node ${f.reason}: it places no VM and takes none over until it sees a majority (it fences itself after the fence timeout)` })
    // `vgrid status` prints these as they are: a lease's reason in them (an older agent's,
    // which may hold a guest's output) is shown with its control characters escaped
    return out.map(p => ({ ...p, message: escapeControls(p.message) }))
  }

  /** Notes the VMs a step would take over but cannot: each logged once per reason. */
  noteBlocked (blocked: Decisions['blocked']): void {
    const seen = new Set<string>()
    for (const b of blocked) {
      seen.add(b.vm)
      if (this.blocked.get(b.vm) === b.reason) continue
      this.blocked.set(b.vm, b.reason)
      this.c.log.warn('a VM cannot be taken over', { vm: b.vm, reason: b.reason })
    }
    for (const vm of this.blocked.keys()) if (!seen.has(vm)) this.blocked.delete(vm)
  }

  /** the document and the nodes as placement sees them, read once for several checks */
  private viewOf (reader = this.c.state.read()): { doc: DocView, nodes: NodeView[] } {
    const doc = docView(reader)
    return { doc, nodes: nodeViews(doc, this.c.membership.members, n => reader.labelsOf(n), this.c.peerId) }
  }
}
