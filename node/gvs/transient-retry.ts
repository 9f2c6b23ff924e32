// Trying a replicated volume's read, write or flush again while it fails only for a
// moment (replicated-volume.ts).
import { GvsError } from './errors.ts'

/**
 * Runs a read, write or flush again while it fails only for replicas out of reach for a
 * moment (GvsError.transient), for up to `retryMs`: an agent that restarts, or one
 * that stops while the others still place objects on it, cost the client a pause,
 * not an I/O error (a guest's filesystem turns read-only on one). Meanwhile the node
 * comes back, or membership drops it and the object settles on its new holders. A
 * write that reached some holders is written again whole, at a new version: the same
 * bytes, so nothing is lost or doubled. `retryMs` bounds when a new attempt may
 * start, not how long one takes (a replica's own timeout); counted from when the
 * failure's cause began where it says (GvsError.since: a node without a majority, a
 * peer out of reach), so one that has outlasted it fails at once; one due to end by a
 * known time (GvsError.until: members back from a restart) is waited for until the
 * first such time given, and `retryMs` after it at most (a due time that keeps moving
 * is not followed: bb37).
 * `stopped`: a sibling piece of the same request failed for good: no new attempt (the
 * request fails anyway).
 */
export async function retryTransient<T> (retryMs: number, stopped: () => boolean, fn: () => Promise<T>): Promise<T> {
  const windowFrom = Date.now()
  let firstUntil: number | undefined
  for (let wait = 50; ; wait = Math.min(wait * 2, 1000)) {
    try {
      return await fn()
    } catch (err) {
      if (!(err instanceof GvsError) || !err.transient) throw err
      // a cause due to end by a known time (members back from a restart) is waited for
      // until then, and what follows it gets a window of its own (bb18: the members back,
      // their volume services not answering yet, failed a write that had waited for them).
      // The first such time a request meets bounds it: a cause that keeps moving its end
      // holds no request for ever (bb37: the window started anew at each such error, and a
      // read whose error had no start to count from waited ten minutes, until the member
      // it waited for was forgotten)
      if (err.until != null) firstUntil ??= err.until
      const deadline = Math.max(Math.min(windowFrom + retryMs, (err.since ?? Infinity) + retryMs), (firstUntil ?? -Infinity) + retryMs)
      const left = deadline - Date.now()
      if (left <= 0) throw err
      // the last attempt at the deadline, not a wait's length before it
      await new Promise(resolve => setTimeout(resolve, Math.min(wait, left)))
      if (stopped()) throw err
    }
  }
}
