// Which connected peers an agent opens state sync sessions to: the `n` with the lowest
// pair score, a hash of both ids, so two peers rank each other alike and every agent's
// choice is stable as long as its connections are. The union of all agents' picks is
// the sync overlay (pure; see test/state-overlay.test.ts for its connectivity).
import { createHash } from 'node:crypto'

export const DEFAULT_SYNC_PEERS = 4

export function pairScore (a: string, b: string): string {
  return createHash('sha256').update(a < b ? a + b : b + a).digest('hex').slice(0, 16)
}

export function pickPeers (self: string, connected: Iterable<string>, n = DEFAULT_SYNC_PEERS, score: (peer: string) => string = p => pairScore(self, p)): string[] {
  return [...new Set(connected)].filter(p => p !== self)
    .map(p => ({ p, s: score(p) }))
    .sort((x, y) => x.s < y.s ? -1 : x.s > y.s ? 1 : 0)
    .slice(0, n)
    .map(x => x.p)
}
