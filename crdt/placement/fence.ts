// Fencing (invariant 3): a node that cannot see a majority of the member roll for
// the fence timeout kills its VMs and claims nothing; a dead holder's lease is taken
// over only after the fence timeout plus a margin, counted from when the holder was
// last heard of, so the old holder has fenced itself (and its watchdog has fired)
// before the VM starts elsewhere.

/**
 * A strict majority of the roll. Only roll members vote: a node not (yet) on the roll
 * counts neither in `aliveSeen` nor in `rollSize` (two newcomers, one on each side of a
 * roll of two cut in half, would each have made a majority of three: rv21).
 */
export function hasMajority (rollSize: number, aliveSeen: number): boolean {
  return aliveSeen * 2 > Math.max(1, rollSize)
}

/**
 * Who votes (pure): the roll's members, this node among them only when on it; an empty
 * roll is a grid of this node alone (the first node before its entry is written, or a
 * grid whose nodes run no VM manager to write one).
 */
export function voters (roll: Iterable<string>, me: string): Set<string> {
  const ids = new Set(roll)
  if (ids.size === 0) ids.add(me)
  return ids
}

/**
 * Why losing any one more node of those in sight would leave no majority (and so fence
 * every node, their VMs killed), or null when the grid can lose one. `aliveSeen`
 * counts this node.
 */
export function noMajorityMargin (rollSize: number, aliveSeen: number, restarting = 0): string | null {
  if (rollSize <= 1 || !hasMajority(rollSize, aliveSeen) || hasMajority(rollSize, aliveSeen - 1)) return null
  const need = Math.floor(rollSize / 2) + 1
  // those stopped for a restart come back (a forget of one is refused meanwhile, bb28)
  const away = rollSize - aliveSeen
  const back = Math.min(restarting, away)
  const gone = away - back
  const advice = [
    ...(gone > 0 ? [`bring back or forget (vgrid node forget) the ${gone} not in sight${back > 0 ? ' otherwise' : ''}`] : []),
    ...(back > 0 ? [`${back === 1 ? 'one is' : `${back} are`} stopped for a restart, back within ${back === 1 ? 'its' : 'their'} restart grace`] : [])
  ]
  return `${aliveSeen} of ${rollSize} roll members are in sight and a majority is ${need}: losing any one of them fences every node (their VMs are killed, nothing is placed, and volumes refuse reads and writes)${advice.length > 0 ? `; ${advice.join('; ')}` : ''}`
}

export interface RollChangeInput {
  /** the nodes on the roll in this node's document */
  roll: Iterable<string>
  me: string
  /** alive in this node's membership table */
  alive: (node: string) => boolean
  /**
   * this node was told to join a grid (--join): until its document holds another node's
   * roll entry it has not synced it yet, and an empty roll would make it a majority of one
   */
  joining: boolean
  /**
   * a node told to join has reached a join address and holds the document a live member
   * announced (its changes up to its last advert): synced with the grid, whose roll may
   * then be empty only because it is new and every node was told to join (the same
   * config on every server, the first one's address in it). Default false.
   */
  synced?: boolean
}

/**
 * Whether this node may change the roll now: write its own entry, or forget another
 * node. Only while it sees a strict majority of the synced roll (itself counted only
 * when on it; the first node of a grid, on an empty roll, may write its own): nodes
 * that join through a node cut off from the majority must not grow the minority's roll
 * into a second majority (both sides would then take over each other's VMs, and both
 * place the same new VM), and an operator on the minority side must not forget the
 * majority away.
 */
export function mayChangeRoll (i: RollChangeInput): { ok: boolean, reason: string } {
  const roll = new Set(i.roll)
  const synced = [...roll].some(id => id !== i.me) || i.synced === true
  if (i.joining && !synced) return { ok: false, reason: 'this node has not synced the grid\'s document yet' }
  if (roll.size === 0) return { ok: true, reason: 'the roll is empty: this is the grid\'s first node' }
  const seen = [...roll].filter(id => id === i.me || i.alive(id)).length
  const onRoll = roll.has(i.me)
  if (!hasMajority(roll.size, seen)) return { ok: false, reason: `this node sees ${seen} of ${roll.size} roll members (${onRoll ? 'itself included' : 'it is not on the roll yet, so its own vote does not count'}): no majority` }
  return { ok: true, reason: `this node sees ${seen} of ${roll.size} roll members` }
}

/**
 * Whether a VM's start, stop or rm may be written on this node now (pure). With a
 * majority of the roll in sight (mayChangeRoll), yes. Without: written here it would
 * take effect only once this node sees one again, while the VM's holder on the other
 * side, which does not see it, runs it on (bb49: `vm stop` answered "stopped"); so no,
 * unless it is a stop or rm of a VM this node holds and the members out of sight could
 * not be a majority on their own, so none of them can have taken its lease over (rv49:
 * a 2-node grid whose other node restarts under its grace; rv50: this node's document
 * still names it the holder on the minority side of a 2 + 3 cut, where the other side
 * took the lease).
 */
export function mayChangeDesired (i: RollChangeInput & { what: 'start' | 'stop' | 'rm', holder: string | undefined }): { ok: boolean, reason: string } {
  // read once: the roll may be an iterator (doc.roll.keys()), spent by a second read
  const roll = new Set(i.roll)
  const may = mayChangeRoll({ ...i, roll })
  if (may.ok || i.what === 'start' || i.holder !== i.me) return may
  const away = [...roll].filter(id => id !== i.me && !i.alive(id)).length
  if (!hasMajority(roll.size, away)) return { ok: true, reason: `${may.reason}, but the ${away} out of sight are no majority either: none of them has taken over this node's VM` }
  return may
}

export interface FenceInput {
  /** nodes on the member roll */
  rollSize: number
  /** roll members this node sees alive, itself included */
  aliveSeen: number
  /**
   * roll members away for a restart whose grace every member confirmed (lentVotes):
   * counted towards the majority that keeps this node's VMs alive, never towards one
   * that claims or takes over. Default 0.
   */
  lent?: number
  /** when this node last saw a majority (ms; its start time if never) */
  lastMajorityAt: number
  now: number
  fenceTimeoutMs: number
}

export interface FenceDecision {
  /** a strict majority in sight (claims and takeovers need it) */
  majority: boolean
  /** restarting members counted towards the fence (FenceInput.lent): with them, a majority keeps this node unfenced */
  lent?: number
  /** the roll's size and the members seen alive (this node included), as decided on */
  rollSize: number
  aliveSeen: number
  /** past the fence timeout without a majority: kill every VM, claim nothing */
  fenced: boolean
  /** may claim or take over now (only with a majority in sight) */
  mayClaim: boolean
  lastMajorityAt: number
  reason: string
}

export function fenced (f: FenceInput): FenceDecision {
  const majority = hasMajority(f.rollSize, f.aliveSeen)
  const seen = { rollSize: f.rollSize, aliveSeen: f.aliveSeen }
  if (majority) return { ...seen, majority, fenced: false, mayClaim: true, lastMajorityAt: f.now, reason: `sees ${f.aliveSeen} of ${f.rollSize} roll members` }
  const lent = f.lent ?? 0
  // restarting members lend their votes to keep what runs here alive: their own vote is
  // locked meanwhile (voteLockedUntil), so no other side can make a majority of them
  if (lent > 0 && hasMajority(f.rollSize, f.aliveSeen + lent)) {
    return { ...seen, majority, lent, fenced: false, mayClaim: false, lastMajorityAt: f.now, reason: `sees ${f.aliveSeen} of ${f.rollSize} roll members, and ${lent} more away for a restart under a grace every member confirmed: its VMs run on, but it claims and takes over nothing until a majority is in sight` }
  }
  const without = f.now - f.lastMajorityAt
  const isFenced = without >= f.fenceTimeoutMs
  return {
    ...seen,
    majority,
    fenced: isFenced,
    mayClaim: false,
    lastMajorityAt: f.lastMajorityAt,
    // in seconds, as `vgrid ha` says the fence timeout (bb46: "10006 ms, past the fence timeout 5000 ms")
    reason: `sees ${f.aliveSeen} of ${f.rollSize} roll members (no majority) for ${(without / 1000).toFixed(1)} s` + (isFenced ? `, past the fence timeout ${f.fenceTimeoutMs / 1000} s` : '')
  }
}

/**
 * Since when this node has seen a majority of the roll without a break: the time by
 * which enough of the members it sees alive now (itself included) had all become
 * alive. -Infinity when it needs no one else, Infinity when it has no majority.
 * `aliveSince` answers for the roll members alive now (undefined: not alive).
 *
 * A node cut off from the majority, on healing, sees members come back one by one:
 * its majority is back while a holder on the other side is still dead in its table,
 * silent for long (because this node was the one cut off) but never fenced. Counting
 * a takeover from this time as well keeps it from taking over a live node's VMs.
 */
export function majoritySince (roll: Iterable<string>, me: string, aliveSince: (node: string) => number | undefined, selfSince = -Infinity): number {
  const ids = voters(roll, me)
  // a node not on the roll has no vote of its own (hasMajority)
  const votes = ids.has(me)
  // others this node needs besides itself for a strict majority
  const need = Math.floor(ids.size / 2) + (votes ? 0 : 1)
  // this node's own vote counts from `selfSince` (a vote it lent while away: voteLockedUntil)
  if (need === 0) return selfSince
  const since: number[] = []
  for (const id of ids) {
    if (id === me) continue
    const s = aliveSince(id)
    if (s !== undefined) since.push(s)
  }
  if (since.length < need) return Infinity
  const others = since.sort((a, b) => a - b)[need - 1]!
  return votes ? Math.max(selfSince, others) : others
}

/**
 * The fence timeout a takeover waits for (before its margin): the longest of this
 * node's and every one any node advertises, dead holders included. A holder fences
 * itself after its own timeout, and nodes may be set differently (the setting is
 * per node; the docs say to set it alike): waiting for the longest never starts a VM
 * before its holder has killed it. A holder whose advert this node never saw (it
 * died before this node joined) is covered while any node advertises the same.
 */
export function takeoverFenceMs (ownMs: number, nodes: ReadonlyArray<{ fenceTimeoutMs?: number }>): number {
  let ms = ownMs
  for (const n of nodes) if (n.fenceTimeoutMs != null && n.fenceTimeoutMs > ms) ms = n.fenceTimeoutMs
  return ms
}

/**
 * what a roll entry records of a restart (crdt/schema.ts RollEntry.restart);
 * `confirmed`: written once every member it asked held the record on disk; `back`:
 * written by the next run once its own watchdog guards the VMs with the usual timeout
 * (a death of that run is a crash: the grace no longer holds its VMs)
 */
export interface RestartRecord { fenceMs: number, since: number, confirmed?: boolean, back?: boolean }

/**
 * More than a restarting node's record (its `since`, on its clock) and its last sign of
 * life can lie apart (it asks the members, then stops), and than two nodes' clocks
 * differ by: a vote lent is locked this much longer than it is lent.
 */
export const LENT_VOTE_SLACK_MS = 10_000

export interface LentVotesInput {
  roll: Iterable<string>
  me: string
  /** alive in this node's member table */
  alive: (node: string) => boolean
  /** the node's restart record in this node's document */
  record: (node: string) => RestartRecord | null | undefined
  /** when this node last heard of it (monotonic, as `now`); undefined: never */
  lastHeard: (node: string) => number | undefined
  now: number
  wallNow: number
}

/**
 * The roll members away for a restart that lend this node their votes (pure): not
 * alive here, with a record every member confirmed, within its fence as this node
 * counts it, the shorter of from its `since` (wall clock) and from when this node last
 * heard it. A node away under such a grace keeps its VMs alive on its watchdog, and no
 * one takes them over meanwhile; the others keep theirs alive too on its vote, which
 * it does not give to anyone else meanwhile: every node counts it towards a takeover
 * only after voteLockedUntil. So two nodes of four restarting at once no longer fence
 * the two that stay (a tester's rolling restart killed their VMs).
 */
export function lentVotes (i: LentVotesInput): string[] {
  const out: string[] = []
  for (const id of new Set(i.roll)) {
    if (id === i.me || i.alive(id)) continue
    const r = i.record(id)
    if (r?.confirmed !== true || !restartPending(r, i.wallNow)) continue
    const heard = i.lastHeard(id)
    if (heard != null && Number.isFinite(heard) && i.now >= heard + r.fenceMs) continue
    out.push(id)
  }
  return out
}

/**
 * When the members away for a restart under a grace every member confirmed are due
 * back (wall clock, ms: the latest end of their graces; `graceOf`: a record's grace
 * from its fence, which the others wait longer; `heard`: counted from when this node
 * last heard each too, the shorter), if with them this node would
 * see a majority of the roll; null when it sees one already, or they would not make
 * one (pure). The volume store lends no votes (a write's record must be held by a
 * majority: lent votes hold nothing), but its reads and writes wait for them that long,
 * not only its usual retry window: two of four restarting at once kept their VMs
 * running on the others for the 30 s grace, while those VMs' disks failed after 20 s.
 */
export function restartsDueBy (roll: ReadonlyArray<{ node: string, restart?: RestartRecord | null }>, me: string, alive: (node: string) => boolean, wallNow: number, graceOf: (fenceMs: number) => number = ms => ms, heard?: { lastHeard: (node: string) => number | undefined, now: number }): number | null {
  const ids = voters(roll.map(e => e.node), me)
  const seen = [...ids].filter(id => id === me || alive(id)).length
  if (hasMajority(ids.size, seen)) return null
  const away = awayForRestart(roll, me, alive, wallNow, graceOf, heard)
  return away.size > 0 && hasMajority(ids.size, seen + away.size) ? Math.max(...away.values()) : null
}

/**
 * The members away under a confirmed restart grace that has not ended, each with when it
 * ends (wall time; pure): the shorter of from its `since` (its clock) and from when this
 * node last heard it (this node's clock), as lentVotes counts: a clock an hour ahead
 * held requests an hour.
 */
export function awayForRestart (roll: ReadonlyArray<{ node: string, restart?: RestartRecord | null }>, me: string, alive: (node: string) => boolean, wallNow: number, graceOf: (fenceMs: number) => number = ms => ms, heard?: { lastHeard: (node: string) => number | undefined, now: number }): Map<string, number> {
  const out = new Map<string, number>()
  for (const e of roll) {
    if (e.node === me || alive(e.node) || e.restart?.confirmed !== true || !restartPending(e.restart, wallNow)) continue
    const grace = graceOf(e.restart.fenceMs)
    const last = heard?.lastHeard(e.node)
    const byHeard = last != null && Number.isFinite(last) ? wallNow + (last + grace - heard!.now) : Infinity
    const end = Math.min(e.restart.since + grace, byHeard)
    if (end > wallNow) out.set(e.node, end)
  }
  return out
}

/**
 * Until when (monotonic, as `now`) a node's vote may count towards a takeover or a
 * stale lease's start (majoritySince): a node that recorded a restart may have lent
 * its vote to nodes that keep their VMs alive on it until its fence has passed (as they
 * count it, lentVotes), and they fence only a fence timeout after that, which the
 * takeover's own wait covers. Counted here the longer way: from its `since` and from
 * `awayAt` (when this node saw it go; undefined: not seen), each plus
 * LENT_VOTE_SLACK_MS. -Infinity without a record.
 */
export function voteLockedUntil (r: RestartRecord | null | undefined, awayAt: number | undefined, now: number, wallNow: number): number {
  if (r == null) return -Infinity
  const byWall = now + (r.since + r.fenceMs - wallNow)
  const byAway = awayAt != null && Number.isFinite(awayAt) ? awayAt + r.fenceMs : -Infinity
  return Math.max(byWall, byAway) + LENT_VOTE_SLACK_MS
}

/**
 * Whether a restart a roll entry records may still hold its node's VMs (pure): until
 * its recorded fence has passed since it was recorded (wall clock; by then the others
 * took them over), or its next run said it is back (its own watchdog then has the
 * usual timeout: an agent killed soon after a restart was taken for restarting, and
 * its VMs, killed by its watchdog in 3 s, waited a minute to run elsewhere).
 */
export function restartPending (r: RestartRecord | null | undefined, wallNow: number): boolean {
  return r != null && r.back !== true && wallNow < r.since + r.fenceMs
}

/**
 * As restartPending, counted on this node's own clock from when it last heard the node
 * (`lastHeard`, `now`: one monotonic clock), as the takeover counts its wait: `since` is
 * the stopping node's wall clock, and a viewer whose clock runs ahead took the grace
 * for over (a node behind, for 90 s too long). Where the node was never heard, `since`.
 */
export function restartPendingFrom (r: RestartRecord | null | undefined, lastHeard: number | undefined, now: number, wallNow: number): boolean {
  if (r == null || r.back === true) return false
  return lastHeard != null && Number.isFinite(lastHeard) ? now < lastHeard + r.fenceMs : restartPending(r, wallNow)
}

/**
 * The fence timeout a takeover of one holder's leases waits for: `fenceMs` (the longest
 * any node advertises, takeoverFenceMs), or the longer one its roll entry records while
 * its agent restarts (its watchdog then keeps its VMs alive that much longer). A record
 * past `maxMs` counts as `maxMs` (the longest an agent may set; a bigger one is damage
 * and must not hold a dead server's VMs for ever).
 */
export function holderFenceMs (fenceMs: number, entry: { restart?: RestartRecord | null } | undefined, maxMs: number): number {
  const r = entry?.restart?.back === true ? undefined : entry?.restart?.fenceMs
  return r == null || !(r > fenceMs) ? fenceMs : Math.min(r, Math.max(fenceMs, maxMs))
}

export interface ActiveFenceInput {
  /** the node's setting */
  configuredMs: number
  /** the fence timeout it ran with last (its previous run's, kept on disk); undefined: none */
  previousMs?: number
  /**
   * every other member (the roll's and the member table's): its own setting as it
   * advertises it; null: an agent that advertises none (it waits `legacyMs`);
   * undefined: not known here (no advert in this table)
   */
  others: ReadonlyArray<number | null | undefined>
  legacyMs: number
}

/**
 * The fence timeout a node runs with now (its own fence and, at 3/5, its watchdog):
 * never longer than any other member's own setting, since a member waits at least its
 * own before taking this node's VMs over (it waits for the longest it knows of, but it
 * may know nothing of this node: one that restarted or joined while this node was cut
 * off). A member not known here counts as the fence this node ran with last (that was
 * no longer than every setting it knew then; a new node: its own setting), one that
 * advertises none as `legacyMs`. Set alike everywhere, it is the setting.
 */
export function activeFenceMs (i: ActiveFenceInput): number {
  let ms = i.configuredMs
  for (const o of i.others) ms = Math.min(ms, o === null ? i.legacyMs : o === undefined ? i.previousMs ?? i.configuredMs : o)
  return ms
}

/**
 * How much later than the members who take its VMs over a holder cut off from every
 * other member may notice that it lost its majority (pure). A node hears heartbeats
 * only from the members that picked it as one of their `watchers`, out of every agent it
 * is connected to: where there are at most watchers + 1 agents (`size`: the roll's or the
 * membership table's, the larger) that is every member, and it finds them silent as soon
 * as they find it silent (0). Otherwise it counts in sight only the members its liveness
 * tables know alive within its liveness window (protocol/liveness.ts): cut off, it
 * loses sight of all within that window, the longest any node advertises (`livenessMs`)
 * and this node's own. A node of an older release has no liveness table: the members it
 * does not hear directly stay alive in its view until their silence timeout, so where
 * any node (`advertised`: the roll's and the alive members', the holder among them) does
 * not advertise a liveness window, or this node has none, the takeover waits the
 * longest silence timeout instead, this node's own (`detection.silenceMs`) or any one
 * advertised; without that the holder could keep its VMs past their start elsewhere
 * (rv21: a roll of ten, one node cut off from all: taken over at 9 s, fenced at 35 s; rv23).
 */
export function holderNoticeMs (size: number, detection: { watchers: number, silenceMs: number, livenessMs?: number } | undefined, advertised: ReadonlyArray<{ silenceMs?: number, livenessMs?: number }> = []): number {
  if (detection == null || size <= detection.watchers + 1) return 0
  let liveness = detection.livenessMs
  let silence = detection.silenceMs
  for (const a of advertised) {
    if (a.silenceMs != null && a.silenceMs > silence) silence = a.silenceMs
    if (a.livenessMs == null) liveness = undefined
    else if (liveness != null && a.livenessMs > liveness) liveness = a.livenessMs
  }
  return liveness ?? silence
}

export interface TakeoverInput {
  holderAlive: boolean
  /** local time the holder was last heard of (advert or heartbeat); this agent's start if never */
  holderLastHeard: number
  /** since when this node has seen a majority without a break (`majoritySince`); absent: always */
  majoritySince?: number
  now: number
  fenceTimeoutMs: number
  marginMs: number
  /** how much later than this node the holder may notice it is cut off (holderNoticeMs; default 0) */
  noticeMs?: number
}

/** whether a lease of a dead holder may be taken over now, and if not how long to wait */
export function takeover (t: TakeoverInput): { allowed: boolean, waitMs: number, reason: string } {
  if (t.holderAlive) return { allowed: false, waitMs: Infinity, reason: 'holder is alive' }
  const notice = t.noticeMs ?? 0
  const after = t.fenceTimeoutMs + notice + t.marginMs
  const what = notice > 0 ? `fence timeout + the time the holder may take to find itself cut off from all (${notice} ms) + margin (${after} ms)` : `fence timeout + margin (${after} ms)`
  // silence only counts while this node had a majority: before, it may have been the one cut off
  const since = t.majoritySince ?? -Infinity
  if (since === Infinity) return { allowed: false, waitMs: Infinity, reason: 'this node sees no majority' }
  if (since > t.holderLastHeard) {
    const wait = since + after - t.now
    if (wait > 0) return { allowed: false, waitMs: wait, reason: `this node has seen a majority only for ${t.now - since} ms; takeover after ${what} of it` }
  }
  const wait = t.holderLastHeard + after - t.now
  if (wait > 0) return { allowed: false, waitMs: wait, reason: `holder silent for ${t.now - t.holderLastHeard} ms; takeover after ${what}` }
  return { allowed: true, waitMs: 0, reason: `holder silent for ${t.now - t.holderLastHeard} ms, past ${what}` }
}
