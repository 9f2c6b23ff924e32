// The membership views the API serves, as pure functions of the member table.
import { countStates, mayBeRunning, type Member, type MemberTable } from '../../protocol/membership.ts'
import { poolOf } from '../../protocol/pool.ts'
import { monoNow, monoToWall } from '../../protocol/mono-clock.ts'
import { protocolOf, type Compat } from '../../protocol/compat.ts'
import type { HealthProblem, NodeView, StatusView, UnseenMemberView } from '../api/types.ts'
import { MAX_CLOCK_OFFSET_MS, type ClockOffset } from '../../protocol/heartbeat.ts'
import { restartPendingFrom, type RestartRecord } from '../../crdt/placement/fence.ts'
import type { OutOfReach } from '../../protocol/membership-service.ts'

export interface SelfInfo { id: string, name: string, version: string, cluster: string, addrs: string[] }

/** `unseen`: the roll's members this agent never heard from (counted apart, only when there are any) */
export function statusView (self: SelfInfo, table: MemberTable, problems: HealthProblem[] = [], ha: StatusView['ha'] = null, unseen = 0, draining?: (id: string) => boolean): StatusView {
  return { node: self, members: { ...countStates(table), ...(unseen > 0 ? { unseen } : {}) }, pool: poolOf(table, draining), health: { ok: problems.length === 0, problems }, ha }
}

/** `labels` are the operator's labels from the cluster document: they win over the node's own (--label). */
export function nodeView (m: Member, selfId: string, labels: Record<string, string>, compat?: Compat, clock?: ClockOffset, roll: { draining?: boolean, restart?: { fenceMs: number, since: number } | null } = {}, wallNow = Date.now(), unreached?: OutOfReach, nameOf?: (id: string) => string): NodeView {
  const a = m.advert
  return {
    id: m.nodeId,
    name: a.name,
    state: m.state,
    self: m.nodeId === selfId,
    since: new Date(monoToWall(m.since)).toISOString(),
    lastSeen: new Date(monoToWall(m.lastSeen)).toISOString(),
    addrs: a.addrs,
    capacity: a.capacity,
    reserved: a.reserved,
    free: a.free,
    load: a.load,
    version: a.version,
    labels: { ...a.labels, ...labels },
    draining: roll.draining === true,
    // gone: counted from when this node last heard it (its clock, not the node's), restartPendingFrom
    restarting: roll.restart == null || !restartPendingFrom(roll.restart, m.state === 'alive' || m.state === 'suspect' ? undefined : m.lastSeen, monoNow(), wallNow) ? null : { since: new Date(roll.restart.since).toISOString(), fenceMs: roll.restart.fenceMs },
    wireguard: a.wireguard,
    overlayDown: m.state === 'alive' ? a.overlayDown ?? null : null,
    dataDiskFull: m.state === 'alive' ? a.dataDiskFull ?? null : null,
    unreaches: m.state === 'alive' ? (a.unreached ?? []).map(id => nameOf?.(id) ?? id) : [],
    vmHost: a.vmHost ?? null,
    fenceTimeoutMs: a.fenceTimeoutMs ?? null,
    silenceMs: a.silenceMs ?? null,
    livenessMs: a.livenessMs ?? null,
    // filled in by the routes (MembershipService.inSight)
    inSight: null,
    incarnation: a.incarnation,
    seq: a.seq,
    clock: clock == null ? null : { offsetMs: Math.round(clock.offsetMs), over: clock.over },
    outOfReach: unreached == null || m.state !== 'alive' ? null : { by: nameOf?.(unreached.by) ?? unreached.by, since: new Date(unreached.since).toISOString() },
    protocol: compat == null ? { speaks: protocolOf(a), ok: true } : { speaks: compat.proto, ok: compat.ok, ...(compat.reason == null ? {} : { reason: compat.reason }) }
  }
}

/** At most 32 addresses fit an advert: loopback ones go first when there are too many. */
export function advertisedAddrs (addrs: string[]): string[] {
  if (addrs.length <= 32) return addrs
  const routable = addrs.filter(a => !a.startsWith('/ip4/127.') && !a.startsWith('/ip6/::1/'))
  return (routable.length > 0 ? routable : addrs).slice(0, 32)
}

/** The IP addresses of multiaddrs ("/ip4/10.0.0.1/tcp/7400/p2p/..." -> "10.0.0.1"). */
export function ipsOf (addrs: string[]): Set<string> {
  return new Set(addrs.flatMap(a => { const p = a.split('/'); return (p[1] === 'ip4' || p[1] === 'ip6') && p[2] != null ? [p[2]] : [] }))
}

/** Addresses a member advertised before and no longer does (none on its first advert). */
export function vanished (before: ReadonlySet<string> | undefined, now: ReadonlySet<string>): Set<string> {
  return new Set([...before ?? []].filter(ip => !now.has(ip)))
}

/**
 * Members that share a name (pure): names are how operators address nodes (`vgrid
 * node label NAME`, `drain NAME`), and a second agent started with another's --name
 * made such commands pick one of them without a word. Only members that may still run
 * count (a node restarted under a new identity leaves its old one dead).
 */
export function duplicateNames (table: MemberTable): HealthProblem[] {
  const byName = new Map<string, string[]>()
  for (const m of table.values()) {
    if (m.state !== 'alive' && m.state !== 'suspect') continue
    const ids = byName.get(m.advert.name) ?? []
    ids.push(m.nodeId)
    byName.set(m.advert.name, ids)
  }
  return [...byName].filter(([, ids]) => ids.length > 1).map(([name, ids]) => ({
    service: 'membership',
    cause: 'duplicate-name',
    message: `${ids.length} members are named "${name}" (${ids.sort().join(', ')}): commands that take a node's name pick one of them; give each server its own --name (or use node ids)`
  }))
}

/**
 * An agent given join addresses (--join, a token's) that reached none of them and has
 * no other member in sight, UNHEARD_GRACE_MS after it started (pure): a wrong address
 * or port, or nothing listening there. It would otherwise run as a grid of its own,
 * saying nothing.
 */
export function joinUnreached (joins: ReadonlyArray<{ addr: string, reached: boolean, lastError?: string }>, table: MemberTable, self: string, upMs: number): HealthProblem[] {
  if (upMs < UNHEARD_GRACE_MS || joins.length === 0 || joins.some(j => j.reached)) return []
  if ([...table.values()].some(m => m.nodeId !== self && (m.state === 'alive' || m.state === 'suspect'))) return []
  return [{
    service: 'membership',
    cause: 'join-unreachable',
    message: `no join address answered and no other member is in sight: ${joins.map(j => `${j.addr} (${j.lastError == null ? 'not dialled yet' : /dial self/i.test(j.lastError) ? 'that is this agent\'s own address: give another member\'s' : j.lastError})`).join('; ')}; check each address (host, port, /p2p/ id) and that an agent of this grid listens there`
  }]
}

/**
 * Why this agent refuses changes for now (pure): it was told to join a grid (join
 * addresses) and has never synced with it. Its document then holds no member at all:
 * a node writes its own roll entry only after it has synced another's (or, founding a
 * grid, at once, with no join address). Changes made here now would meet the grid's
 * under the same names when it joins (two VMs or volumes of one name, one overwriting
 * the other). Null once the roll has any entry, or once a join address answered (the
 * document syncs within moments of that).
 */
export function notJoined (joins: readonly string[], roll: ReadonlyArray<{ node: string }>, reached: boolean): string | null {
  if (joins.length === 0 || roll.length > 0 || reached) return null
  return `this agent was told to join a grid (${joins.slice(0, 3).join(', ')}${joins.length > 3 ? ', ...' : ''}) and has not reached it yet: a change made here now could clash with the grid's once it joins (a VM or volume of the same name); it takes changes once it has synced with a member (see vgrid status: join-unreachable), or start it without --join to found a grid of its own`
}

/** how long after this agent started a member of the roll may go unheard before it is a problem (gossip finds the live ones in seconds) */
export const UNHEARD_GRACE_MS = 15_000

/**
 * Members of the grid's roll this agent has never heard from (pure): not in its member
 * table at all, so `vgrid nodes` cannot list them. A server cut off while this agent
 * restarted, or one dead long enough for gossip to forget it, yet still a member: it
 * counts against the majority the VM manager fences by. Nothing while the agent is
 * younger than UNHEARD_GRACE_MS (`upMs`).
 */
/** the roll's members this agent has no entry for (never heard from since it started), by name */
export function unseenMembers (roll: ReadonlyArray<{ node: string, name: string, joined: number }>, table: MemberTable): UnseenMemberView[] {
  return roll.filter(r => !table.has(r.node)).sort((a, b) => a.name.localeCompare(b.name)).map(r => ({ id: r.node, name: r.name, joined: new Date(r.joined).toISOString() }))
}

export function unheardMembers (roll: ReadonlyArray<{ node: string, name: string, joined: number }>, table: MemberTable, upMs: number): HealthProblem[] {
  if (upMs < UNHEARD_GRACE_MS) return []
  const unheard = unseenMembers(roll, table)
  if (unheard.length === 0) return []
  return [{
    service: 'membership',
    cause: 'members-unheard',
    message: `${unheard.length} member(s) of the grid have not been heard from since this agent started: ${unheard.map(r => `${r.name} (${r.id})`).join(', ')}; they count as down for the majority and their VMs run elsewhere (once a majority is in sight to take them over): bring them back, or \`vgrid node forget NAME\` one that is gone for good`
  }]
}


/**
 * Members of the grid's roll that this node holds dead (pure): `vgrid status` said
 * `health ok` with a member down (a tester), though the grid runs short of a server:
 * its VMs were moved and its volume copies are made anew on the others, and it counts
 * as down for the majority. Not a member that left (a graceful stop or leave), nor one
 * the roll no longer holds (forgotten); every dead member where there is no roll yet.
 */
export function deadMembers (roll: ReadonlyArray<{ node: string }>, table: MemberTable, now = monoNow()): HealthProblem[] {
  const onRoll = new Set(roll.map(r => r.node))
  const dead = [...table.values()].filter(m => m.state === 'dead' && (onRoll.size === 0 || onRoll.has(m.nodeId)))
    .sort((a, b) => a.since - b.since)
  if (dead.length === 0) return []
  const say = (m: Member): string => `${m.advert.name} (dead for ${Math.max(0, Math.round((now - m.since) / 1000))} s)`
  return [{
    service: 'membership',
    cause: 'members-dead',
    message: `${dead.length} member(s) of the grid are dead as this node sees them: ${dead.map(say).join(', ')}; each counts as down for the majority, its VMs run elsewhere and its volume copies are made anew on the others (once a majority is in sight to do it): bring it back, or \`vgrid node forget NAME\` one that is gone for good`,
    since: new Date(monoToWall(dead[0]!.since)).toISOString()
  }]
}

/**
 * Members still on the roll whose agent left the gossip (stopped for a restart: SIGTERM,
 * an upgrade) and are not back once their restart grace is over, or had none (pure):
 * as dead ones are, they count as down for the majority and their VMs run elsewhere;
 * health said nothing of them (a tester's host away 40 s past its grace: `ok`).
 */
export function awayMembers (roll: ReadonlyArray<{ node: string, restart?: RestartRecord | null }>, table: MemberTable, now = monoNow(), wallNow = Date.now()): HealthProblem[] {
  return leftOnRoll(roll, table, now, wallNow, false, (n, said) => ({ cause: 'members-away', message: `${n} member(s) of the grid stopped their agent for a restart and are not back past its grace: ${said}; each counts as down for the majority, its VMs run elsewhere: start its agent again, or \`vgrid node forget NAME\` one that is gone for good` }))
}

/**
 * The members on the roll whose agent left the gossip, within their restart grace
 * (`pending`) or not, as one problem (none when there are none). Counted from when this
 * node last heard each, as the node views count it (a clock ahead said `away` while they
 * said `restarting`).
 */
function leftOnRoll (roll: ReadonlyArray<{ node: string, restart?: RestartRecord | null }>, table: MemberTable, now: number, wallNow: number, pending: boolean, say: (n: number, said: string) => { cause: string, message: string }): HealthProblem[] {
  const byNode = new Map(roll.map(r => [r.node, r]))
  const left = [...table.values()].filter(m => m.state === 'left' && byNode.has(m.nodeId) && restartPendingFrom(byNode.get(m.nodeId)!.restart, m.lastSeen, now, wallNow) === pending)
    .sort((a, b) => a.since - b.since)
  if (left.length === 0) return []
  const said = left.map(m => `${m.advert.name} (stopped ${Math.max(0, Math.round((now - m.since) / 1000))} s ago)`).join(', ')
  return [{ service: 'membership', ...say(left.length, said), since: new Date(monoToWall(left[0]!.since)).toISOString() }]
}

/**
 * Members on the roll away for a restart within their grace (pure): not down for the
 * majority, their VMs run on, but those VMs' links are down and the volume copies there
 * are waited for; the grid is not at full redundancy until they are back (bb32: health
 * said ok meanwhile, and an operator restarting agents one by one went on too early).
 */
export function restartingMembers (roll: ReadonlyArray<{ node: string, restart?: RestartRecord | null }>, table: MemberTable, now = monoNow(), wallNow = Date.now()): HealthProblem[] {
  return leftOnRoll(roll, table, now, wallNow, true, (n, said) => ({ cause: 'members-restarting', message: `${n} member(s) of the grid are away for a restart, within their grace: ${said}; their VMs are not moved elsewhere meanwhile, their links are down and the volume copies there are waited for until they are back` }))
}

/**
 * Members alive that this node does not reach directly while another member does
 * (pure): a partial partition, this server and each of them cut from each other on the
 * network. Membership holds them alive (others vouch for them), but whatever goes
 * straight between the two (WireGuard links of VMs, the volume store's replica calls)
 * fails until it heals.
 */
export function outOfReachProblems (unreached: ReadonlyMap<string, OutOfReach>, table: MemberTable, now = Date.now()): HealthProblem[] {
  const cut = [...unreached].filter(([id]) => table.get(id)?.state === 'alive')
  if (cut.length === 0) return []
  const name = (id: string): string => table.get(id)?.advert.name ?? id
  const since = Math.min(...cut.map(([, r]) => r.since))
  const named = cut.map(([id, r]) => `${name(id)} (for ${Math.max(0, Math.round((now - r.since) / 1000))} s; ${name(r.by)} reaches it)`).sort()
  return [{
    service: 'membership',
    cause: 'members-out-of-reach',
    message: `this server cannot reach ${named.join(', ')} on the network, though the grid can: a partial partition; VM links and volume copies between them fail until it heals: check the network between this server and ${cut.length === 1 ? 'it' : 'them'}`,
    since: new Date(since).toISOString()
  }]
}

/** an offset as `vgrid nodes` and health say it: "+90.0 s", "-0.4 s" */
export const offsetText = (ms: number): string => `${ms >= 0 ? '+' : '-'}${(Math.abs(ms) / 1000).toFixed(1)} s`

/**
 * Members alive or suspect whose clock is off from this node's by more than the bound
 * (pure): their stamps in the future are held back (the document's latest-write rule),
 * and VM histories, stamped by each node's clock, mix the clocks.
 */
export function clockOff (offsets: ReadonlyMap<string, ClockOffset>, table: MemberTable, self: string, steady: (id: string) => boolean = () => true): HealthProblem[] {
  const off = [...offsets].filter(([id, c]) => c.over && id !== self && mayBeRunning(table.get(id)?.state) && steady(id))
  if (off.length === 0) return []
  const named = off.map(([id, c]) => `${table.get(id)?.advert.name ?? id} ${offsetText(c.offsetMs)}`)
  return [{
    service: 'membership',
    cause: 'clock-offset',
    message: `${off.length} member(s) have a clock off from this node's by more than ${MAX_CLOCK_OFFSET_MS} ms: ${named.join(', ')}; changes they stamp in the future are held back, and VM histories mix the clocks: check NTP on both`
  }]
}

/** how long a member's clock must stay past the bound before health says so (frames held up by a cut read as offsets for a moment after it heals) */
export const CLOCK_STEADY_MS = 10_000

/** clockOff over the offsets as they last: a member counts once past the bound for CLOCK_STEADY_MS */
export class ClockWatch {
  private readonly overSince = new Map<string, number>()
  problems (offsets: ReadonlyMap<string, ClockOffset>, table: MemberTable, self: string, now = Date.now()): HealthProblem[] {
    for (const id of this.overSince.keys()) if (offsets.get(id)?.over !== true) this.overSince.delete(id)
    for (const [id, c] of offsets) if (c.over && !this.overSince.has(id)) this.overSince.set(id, now)
    return clockOff(offsets, table, self, id => now - (this.overSince.get(id) ?? now) >= CLOCK_STEADY_MS)
  }
}

/** a member's state that runs nothing: once off the roll too, it is no longer shown nor counted (routes.ts shown) */
export const gone = (state: Member['state']): boolean => state === 'dead' || state === 'left'
