// Fencing (invariant 3): a node that cannot see a majority of the member roll for
// the fence timeout kills its VMs and claims nothing; a dead holder's lease is taken
// over only after the fence timeout plus a margin, counted from when the holder was
// last heard of, so the old holder has fenced itself (and its watchdog has fired)
// before the VM starts elsewhere.

/** a strict majority of the roll; a node not (yet) on the roll still counts itself */
export function hasMajority (rollSize: number, aliveSeen: number): boolean {
  return aliveSeen * 2 > Math.max(1, rollSize)
}

export interface FenceInput {
  /** nodes on the member roll */
  rollSize: number
  /** roll members this node sees alive, itself included */
  aliveSeen: number
  /** when this node last saw a majority (ms; its start time if never) */
  lastMajorityAt: number
  now: number
  fenceTimeoutMs: number
}

export interface FenceDecision {
  majority: boolean
  /** past the fence timeout without a majority: kill every VM, claim nothing */
  fenced: boolean
  /** may claim or take over now (only with a majority in sight) */
  mayClaim: boolean
  lastMajorityAt: number
  reason: string
}

export function fenced (f: FenceInput): FenceDecision {
  const majority = hasMajority(f.rollSize, f.aliveSeen)
  if (majority) return { majority, fenced: false, mayClaim: true, lastMajorityAt: f.now, reason: `sees ${f.aliveSeen} of ${f.rollSize} roll members` }
  const without = f.now - f.lastMajorityAt
  const isFenced = without >= f.fenceTimeoutMs
  return {
    majority,
    fenced: isFenced,
    mayClaim: false,
    lastMajorityAt: f.lastMajorityAt,
    reason: `sees ${f.aliveSeen} of ${f.rollSize} roll members (no majority) for ${without} ms` + (isFenced ? `, past the fence timeout ${f.fenceTimeoutMs} ms` : '')
  }
}

export interface TakeoverInput {
  holderAlive: boolean
  /** local time the holder was last heard of (advert or heartbeat); this agent's start if never */
  holderLastHeard: number
  now: number
  fenceTimeoutMs: number
  marginMs: number
}

/** whether a lease of a dead holder may be taken over now, and if not how long to wait */
export function takeover (t: TakeoverInput): { allowed: boolean, waitMs: number, reason: string } {
  if (t.holderAlive) return { allowed: false, waitMs: Infinity, reason: 'holder is alive' }
  const at = t.holderLastHeard + t.fenceTimeoutMs + t.marginMs
  const wait = at - t.now
  if (wait > 0) return { allowed: false, waitMs: wait, reason: `holder silent for ${t.now - t.holderLastHeard} ms; takeover after fence timeout + margin (${t.fenceTimeoutMs + t.marginMs} ms)` }
  return { allowed: true, waitMs: 0, reason: `holder silent for ${t.now - t.holderLastHeard} ms, past fence timeout + margin` }
}
