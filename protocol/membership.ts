// Membership and failure detection as a pure state machine:
//   (table, event, now) -> (table, transitions)
// Time comes in as a number, so tests drive it with a fake clock and the agent with
// the real one. A member's liveness is judged by when *we* last heard from it, never
// by the sender's clock.
import { isNewer, type Advert } from './advert.ts'

export type MemberState = 'alive' | 'suspect' | 'dead' | 'left'

export interface Member {
  readonly nodeId: string
  readonly state: MemberState
  /** local time (ms) at which the state was entered */
  readonly since: number
  /** local time (ms) of the last accepted advert */
  readonly lastSeen: number
  readonly advert: Advert
}

export type MemberTable = ReadonlyMap<string, Member>

export interface MembershipConfig {
  /** silence after which a member is suspect */
  suspectAfterMs: number
  /** silence after which a member is dead */
  deadAfterMs: number
  /** time a dead or left member is remembered before it is forgotten */
  forgetAfterMs: number
}

/**
 * Defaults: adverts go out every second, so a suspect has missed about two in a row
 * and a dead member about four; a killed node is dead everywhere 3.5-4.5 s after it
 * died (inside the 5 s target), and a healthy grid has ample slack against
 * event-loop stalls before anything is suspected.
 */
export const DEFAULT_MEMBERSHIP: MembershipConfig = {
  suspectAfterMs: 3000,
  deadAfterMs: 4500,
  forgetAfterMs: 10 * 60_000
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

export function validateMembershipConfig (c: MembershipConfig): string | null {
  if (!(c.suspectAfterMs > 0)) return 'suspectAfterMs must be > 0'
  if (!(c.deadAfterMs > c.suspectAfterMs)) return 'deadAfterMs must be greater than suspectAfterMs'
  if (!(c.forgetAfterMs > 0)) return 'forgetAfterMs must be > 0'
  return null
}

/** An accepted advert: the member is (again) alive, or has left if it says so. */
export function onAdvert (table: MemberTable, advert: Advert, now: number): Step {
  const prev = table.get(advert.nodeId)
  if (prev != null && !isNewer(advert, prev.advert)) return { table, transitions: [] }
  const to: MemberState = advert.status === 'leaving' ? 'left' : 'alive'
  const next = new Map(table)
  const changed = prev?.state !== to
  next.set(advert.nodeId, {
    nodeId: advert.nodeId,
    state: to,
    since: changed ? now : prev.since,
    lastSeen: now,
    advert
  })
  return { table: next, transitions: changed ? [{ nodeId: advert.nodeId, from: prev?.state ?? 'unknown', to }] : [] }
}

/** The passage of time: silent members become suspect, then dead, then forgotten. */
export function onTick (table: MemberTable, now: number, cfg: MembershipConfig, selfId?: string): Step {
  let next: Map<string, Member> | undefined
  const transitions: Transition[] = []
  for (const m of table.values()) {
    if (m.nodeId === selfId) continue
    const silent = now - m.lastSeen
    let to: MemberState | 'forgotten' = m.state
    if (m.state === 'alive' && silent >= cfg.deadAfterMs) to = 'dead'
    else if (m.state === 'alive' && silent >= cfg.suspectAfterMs) to = 'suspect'
    else if (m.state === 'suspect' && silent >= cfg.deadAfterMs) to = 'dead'
    else if ((m.state === 'dead' || m.state === 'left') && now - m.since >= cfg.forgetAfterMs) to = 'forgotten'
    if (to === m.state) continue
    next ??= new Map(table)
    if (to === 'forgotten') next.delete(m.nodeId)
    else next.set(m.nodeId, { ...m, state: to, since: now })
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
