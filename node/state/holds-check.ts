// "Do you hold this change on disk?" asked of other members before counting on them
// having it: a stopping agent's restart grace (node/dvmm/restart-grace.ts) and a volume
// written in a new placement (node/gvs/write-intervals.ts). The asker sends its
// document's heads; the member pulls what it lacks from the asker (noteHeads) and
// answers ok once its document holds every change up to them, flushed to disk, or an
// error once it waited HOLD_WAIT_MS in vain.
import { request, serve, type RequestHost } from '../p2p/request.ts'

/** the state service answers it for anyone who asks (StateService.start) */
export const HOLDS_PROTOCOL = '/vgrid/state/holds/1.0.0'
/** the same ask on the restart grace's protocol (node/dvmm/restart-grace.ts), which agents of earlier releases answer too */
export const RESTART_HOLDS_PROTOCOL = '/vgrid/dvmm/restart/1.0.0'
/** how long an asker waits for each member's answer */
export const ASK_TIMEOUT_MS = 3000
/** how long a member waits to have the changes (it pulls them from the asker) before it says no */
const HOLD_WAIT_MS = 2500
const HEAD = /^[0-9a-f]{64}$/

/** an ask's heads, or why it is not one (pure) */
export function checkAsk (req: unknown): { heads: string[] } | { error: string } {
  const heads = (req as { heads?: unknown } | null)?.heads
  if (!Array.isArray(heads) || heads.length === 0 || heads.length > 64 || !heads.every(h => typeof h === 'string' && HEAD.test(h))) return { error: 'heads: expected 1 to 64 change hashes' }
  return { heads: heads as string[] }
}

export interface HoldsState {
  /** the document holds every change up to `heads`, on disk (StateService.holds) */
  holds?: (heads: string[]) => Promise<boolean>
  /** a peer has these heads: pull them (StateService.noteHeads) */
  noteHeads?: (peer: string, heads: string[]) => void
}

/** this member's answer to `from`'s ask */
export async function answerHolds (state: HoldsState, req: unknown, from: string, now: () => number = Date.now): Promise<unknown> {
  const ask = checkAsk(req)
  if ('error' in ask) return ask
  if (state.holds == null) return { error: 'this node keeps no document' }
  state.noteHeads?.(from, ask.heads)
  const until = now() + HOLD_WAIT_MS
  for (;;) {
    if (await state.holds(ask.heads)) return { ok: true }
    if (now() >= until) return { error: 'this node does not hold the record yet' }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

/** answers the ask on `protocol` */
export async function serveHolds (host: RequestHost, protocol: string, state: HoldsState, now?: () => number): Promise<void> {
  await serve(host, protocol, async (req, from) => await answerHolds(state, req, from, now), { maxRequestBytes: 8 * 1024, maxInboundStreams: 8 })
}

/**
 * Asks every peer at once, on the first of `protocols` it speaks; the ones that did not
 * confirm, each as "NAME: why"
 */
export async function askHolds (host: RequestHost | undefined, protocols: string | readonly string[], peers: readonly string[], heads: readonly string[], nameOf: (id: string) => string, excused: (id: string) => boolean = () => false): Promise<string[]> {
  if (peers.length === 0) return []
  if (host == null || heads.length === 0) return peers.map(p => `${nameOf(p)}: cannot be asked from here`)
  const list = typeof protocols === 'string' ? [protocols] : protocols
  const answers = await Promise.all(peers.map(async p => {
    let why = 'no answer'
    for (const protocol of list) {
      try {
        const a = await request(host, p, protocol, { heads }, { timeoutMs: ASK_TIMEOUT_MS, maxAnswerBytes: 4096 }) as { ok?: unknown, error?: unknown } | null
        return a?.ok === true ? null : `${nameOf(p)}: ${typeof a?.error === 'string' ? a.error : 'no answer'}`
      } catch (err) {
        why = (err as Error).message
        // an agent of another release may speak the next protocol; any other failure is the answer
        if ((err as Error).name !== 'UnsupportedProtocolError' && !/protocol/i.test(why)) break
      }
    }
    // one that could not answer because it is going away itself is not waited for (asked
    // after the failure: it may have said so meanwhile); one that answers is up, and is
    // never excused
    return excused(p) ? null : `${nameOf(p)}: ${why}`
  }))
  return answers.filter(a => a != null)
}
