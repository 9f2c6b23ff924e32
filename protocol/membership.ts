// Membership and failure detection as a pure state machine:
//   (table, event, now) -> (table, transitions)
// Time comes in as a number, so tests drive it with a fake clock and the agent with
// the real one. Liveness is judged on local receipt times, never the sender's clock.
//
// The protocol is SWIM-like, so that each node's work stays constant as the grid
// grows (a full advert from every node every second costs O(N) per node):
// - neighbours (directly connected members) exchange small heartbeats; a neighbour
//   that falls silent, or whose connections all drop, is *suspected* and the
//   suspicion is gossiped to everyone;
// - a suspect that is alive refutes by publishing a newer advert (its version, the
//   pair (incarnation, seq), goes up); one that does not is dead after the
//   suspicion timeout, and the nodes that raised the suspicion gossip the death so
//   that everyone agrees at once;
// - adverts are re-published every so often anyway, and a member not heard of at
//   all for the silence timeout is suspected too (a node cut off from everyone).
import type { Advert } from './advert.ts'

export type MemberState = 'alive' | 'suspect' | 'dead' | 'left'

/** (incarnation, seq) of a member's adverts: incarnation is its start time, kept above its previous run's (node/incarnation.ts), seq counts adverts. */
export interface Version { incarnation: number, seq: number }

export function compareVersions (a: Version, b: Version): number {
  return a.incarnation !== b.incarnation ? Math.sign(a.incarnation - b.incarnation) : Math.sign(a.seq - b.seq)
}

export interface Member {
  readonly nodeId: string
  readonly state: MemberState
  /** local time (ms) at which the state was entered */
  readonly since: number
  /** local time (ms) of the last sign of life (advert or heartbeat) */
  readonly lastSeen: number
  /** newest version seen in an advert or a heartbeat */
  readonly version: Version
  /** the version a suspicion (or death) was about; only a newer one clears it */
  readonly suspectedVersion?: Version
  readonly advert: Advert
}

export type MemberTable = ReadonlyMap<string, Member>

/** alive or suspect: a member that may still be running (its clients, its VMs, its copies) */
export const mayBeRunning = (state: MemberState | undefined): boolean => state === 'alive' || state === 'suspect'

/**
 * The member a name means (pure): a server replaced under the same name (a new identity)
 * leaves the old one in the member table, dead, until it is forgotten, and a name taken
 * as the first match meant it: a tester's drain said "not on the member roll" and a
 * label went to the old identity. So: one that may be running, then one on the roll
 * (`onRoll`), then the one heard from last.
 */
/**
 * The full id a shortened one means (as `vgrid nodes` prints ids: `12D3KooW…R9uGp9`, or
 * with "..."), when exactly one of `ids` starts and ends so; else `text` as it is (bb46:
 * an id copied from the table was "no node"). Pure.
 */
export function expandShortId (text: string, ids: Iterable<string>): string {
  const m = /^([^.…]{4,})(?:…|\.\.\.)([^.…]{4,})$/.exec(text)
  if (m == null) return text
  let found: string | undefined
  for (const id of ids) {
    if (id.length <= m[1]!.length + m[2]!.length || !id.startsWith(m[1]!) || !id.endsWith(m[2]!) || id === found) continue
    if (found != null) return text
    found = id
  }
  return found ?? text
}

export function memberByName (members: Iterable<Member>, name: string, onRoll: (id: string) => boolean = () => false): Member | undefined {
  let best: Member | undefined
  let bestRank: [number, number, number] | undefined
  for (const m of members) {
    if (m.advert.name !== name) continue
    const rank: [number, number, number] = [mayBeRunning(m.state) ? 1 : 0, onRoll(m.nodeId) ? 1 : 0, m.lastSeen]
    if (bestRank == null || rank[0] > bestRank[0] || (rank[0] === bestRank[0] && (rank[1] > bestRank[1] || (rank[1] === bestRank[1] && rank[2] > bestRank[2])))) {
      best = m
      bestRank = rank
    }
  }
  return best
}

export interface MembershipConfig {
  /** a neighbour whose heartbeats stop for this long is suspected */
  suspectAfterMs: number
  /** a suspect that has not refuted within this time is dead */
  deadAfterMs: number
  /** a member not heard of at all (no advert, no heartbeat) for this long is suspected */
  silenceAfterMs: number
  /** time a dead or left member is remembered before it is forgotten */
  forgetAfterMs: number
}

/**
 * Defaults: heartbeats every 500 ms, so a suspect has missed three in a row; a
 * crashed server whose connections reset is suspected at once and dead everywhere
 * 2.5 s later, one that went silent (power, partition) within 1.5 + 2.5 = 4 s plus a
 * heartbeat tick: inside the 5 s target. Adverts are refreshed every 10 s, so the
 * silence timeout allows two to be lost.
 */
export const DEFAULT_MEMBERSHIP: MembershipConfig = {
  suspectAfterMs: 1500,
  deadAfterMs: 2500,
  silenceAfterMs: 30_000,
  forgetAfterMs: 10 * 60_000
}

/**
 * The longest a silent member stays alive in anyone's view: its silence is noticed
 * after suspectAfter (plus one heartbeat interval), and it is dead deadAfter later.
 * This is "the dead timeout" that tests and docs quote (4.5 s with the defaults).
 */
export function deadTimeoutMs (c: MembershipConfig, heartbeatIntervalMs: number): number {
  return c.suspectAfterMs + heartbeatIntervalMs + c.deadAfterMs
}

export interface Transition {
  nodeId: string
  from: MemberState | 'unknown'
  to: MemberState | 'forgotten'
}

export interface Step {
  table: MemberTable
  transitions: Transition[]
}

const unchanged = (table: MemberTable): Step => ({ table, transitions: [] })

function replace (table: MemberTable, m: Member, prev: Member | undefined): Step {
  const next = new Map(table)
  next.set(m.nodeId, m)
  const transitions: Transition[] = prev?.state === m.state ? [] : [{ nodeId: m.nodeId, from: prev?.state ?? 'unknown', to: m.state }]
  return { table: next, transitions }
}

export function validateMembershipConfig (c: MembershipConfig): string | null {
  for (const [k, v] of Object.entries(c)) if (!(typeof v === 'number' && v > 0)) return `${k} must be > 0`
  if (!(c.silenceAfterMs > c.suspectAfterMs)) return 'silenceAfterMs must be greater than suspectAfterMs'
  return null
}

/** An accepted (signed, validated) advert. */
export function onAdvert (table: MemberTable, advert: Advert, now: number): Step {
  const prev = table.get(advert.nodeId)
  const version = { incarnation: advert.incarnation, seq: advert.seq }
  if (prev != null && compareVersions(version, prev.advert) <= 0) return unchanged(table)
  let state: MemberState = advert.status === 'leaving' ? 'left' : 'alive'
  // a newer advert that is still not newer than what was suspected does not clear it
  if (state === 'alive' && prev?.suspectedVersion != null && compareVersions(version, prev.suspectedVersion) <= 0 &&
    (prev.state === 'suspect' || prev.state === 'dead')) state = prev.state
  const newest = prev == null || compareVersions(version, prev.version) > 0 ? version : prev.version
  return replace(table, {
    nodeId: advert.nodeId,
    state,
    since: prev?.state === state ? prev.since : now,
    lastSeen: now,
    version: newest,
    suspectedVersion: state === 'alive' || state === 'left' ? undefined : prev?.suspectedVersion,
    advert
  }, prev)
}

/**
 * A heartbeat from a neighbour: first-hand proof of life (the connection is
 * authenticated), but it only clears a suspicion if the member has refuted it,
 * i.e. its version is newer than the suspected one. `lastSeenGrainMs` lets a beat
 * that brings nothing new skip the update while lastSeen is that fresh.
 */
export function onHeartbeat (table: MemberTable, nodeId: string, version: Version, now: number, lastSeenGrainMs = 0): Step {
  const prev = table.get(nodeId)
  if (prev == null || prev.state === 'left') return unchanged(table)
  // a beat that would change nothing but lastSeen is recorded at most every grain:
  // a node receives 8 beats a second and each step copies the table
  if (prev.state === 'alive' && compareVersions(version, prev.version) <= 0 && now - prev.lastSeen < lastSeenGrainMs) return unchanged(table)
  const newest = compareVersions(version, prev.version) > 0 ? version : prev.version
  const refuted = prev.suspectedVersion == null || compareVersions(version, prev.suspectedVersion) > 0
  const state: MemberState = refuted ? 'alive' : prev.state
  return replace(table, {
    ...prev,
    state,
    since: state === prev.state ? prev.since : now,
    lastSeen: now,
    version: newest,
    suspectedVersion: state === 'alive' ? undefined : prev.suspectedVersion
  }, prev)
}

/** A suspicion (ours or gossiped): ignored if the member already showed a newer version. */
export function onSuspect (table: MemberTable, nodeId: string, version: Version, now: number): Step {
  const prev = table.get(nodeId)
  if (prev == null || prev.state !== 'alive') return unchanged(table)
  if (compareVersions(version, prev.version) < 0) return unchanged(table)
  // never hold a member to a version it has not been seen with: a suspicion naming a
  // far-future version could otherwise keep it dead whatever it does
  return replace(table, { ...prev, state: 'suspect', since: now, suspectedVersion: prev.version }, prev)
}

/**
 * A death reported by a node whose own suspicion ran out unrefuted (SWIM's confirm):
 * adopted at once, so the grid agrees on a death one gossip round after the first
 * countdown ends instead of each node finishing its own, which on a busy node began
 * late. Like a suspicion, it is ignored if the member has shown a newer version, and
 * it holds the member to the version it was seen with.
 */
export function onDeathReport (table: MemberTable, nodeId: string, version: Version, now: number): Step {
  const prev = table.get(nodeId)
  if (prev == null || (prev.state !== 'alive' && prev.state !== 'suspect')) return unchanged(table)
  if (compareVersions(version, prev.version) < 0) return unchanged(table)
  return replace(table, { ...prev, state: 'dead', since: now, suspectedVersion: prev.suspectedVersion ?? prev.version }, prev)
}

/** The passage of time: suspects die, the silent are suspected, the dead are forgotten. */
export function onTick (table: MemberTable, now: number, cfg: MembershipConfig, selfId?: string): Step {
  let next: Map<string, Member> | undefined
  const transitions: Transition[] = []
  for (const m of table.values()) {
    if (m.nodeId === selfId) continue
    let to: MemberState | 'forgotten' = m.state
    if (m.state === 'alive' && now - m.lastSeen >= cfg.silenceAfterMs) to = 'suspect'
    else if (m.state === 'suspect' && now - m.since >= cfg.deadAfterMs) to = 'dead'
    else if ((m.state === 'dead' || m.state === 'left') && now - m.since >= cfg.forgetAfterMs) to = 'forgotten'
    if (to === m.state) continue
    next ??= new Map(table)
    if (to === 'forgotten') next.delete(m.nodeId)
    else next.set(m.nodeId, { ...m, state: to, since: now, suspectedVersion: m.suspectedVersion ?? m.version })
    transitions.push({ nodeId: m.nodeId, from: m.state, to })
  }
  return { table: next ?? table, transitions }
}

export interface MemberCounts { alive: number, suspect: number, dead: number, left: number }

export function countStates (table: MemberTable): MemberCounts {
  const c: MemberCounts = { alive: 0, suspect: 0, dead: 0, left: 0 }
  for (const m of table.values()) c[m.state]++
  return c
}
