// This run's advert incarnation (protocol/own-advert.ts). Peers order a member's
// adverts by (incarnation, seq) and drop one older than what they hold, so each run's
// incarnation must be greater than the last one's whatever the wall clock does: an
// agent restarted with its clock behind its previous run (a wrong clock, faketime, an
// NTP step back after a fast clock) would otherwise never be seen as back. The last
// incarnation used is kept in <data-dir>/incarnation.json (`{"last": N}`), written
// durably before the first advert goes out, and the next run takes
// max(now, last + 1): the wall clock when it is ahead, as before.
//
// No file (a new data dir, an older release) reads as none. A damaged or unreadable
// one does not stop the agent: it falls back to the wall clock, with a warning naming
// the file. A record that cannot be written is logged too, and the run goes on.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileDurableSync } from './durable-file.ts'
import type { Logger } from './log.ts'

export const INCARNATION_FILE = 'incarnation.json'

export const incarnationFile = (dataDir: string): string => join(dataDir, INCARNATION_FILE)

/** The incarnation of a run started at wall time `now` after one that used `last` (pure). */
export function nextIncarnation (now: number, last: number | undefined): number {
  const t = Math.floor(now)
  return last == null ? t : Math.max(t, last + 1)
}

/** what the record says: the last incarnation, none (no file), or what is wrong with it */
export type IncarnationRecord = { last: number } | { none: true } | { damaged: string }

export function readIncarnationRecord (dataDir: string): IncarnationRecord {
  let text: string
  try {
    text = readFileSync(incarnationFile(dataDir), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { none: true }
    return { damaged: `it cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }
  }
  let v: unknown
  try {
    v = (JSON.parse(text) as { last?: unknown } | null)?.last
  } catch (err) {
    return { damaged: `it is not JSON (${(err as Error).message}): ${JSON.stringify(text.slice(0, 60))}` }
  }
  // an advert's incarnation is a count (protocol/advert.ts): the next one must be one too
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v >= Number.MAX_SAFE_INTEGER) {
    return { damaged: `"last" is ${v === undefined ? 'missing' : JSON.stringify(v)}, not an incarnation` }
  }
  return { last: v }
}

/**
 * This run's incarnation: after the last one recorded in the data dir (see above),
 * recorded in its place before it is returned. Never throws.
 */
export function claimIncarnation (dataDir: string, log: Pick<Logger, 'warn'>, now: number = Date.now()): number {
  const file = incarnationFile(dataDir)
  const r = readIncarnationRecord(dataDir)
  if ('damaged' in r) {
    log.warn(`the record of this node's last advert incarnation is damaged: ${r.damaged}. This run's incarnation is the wall clock's time; if the clock is behind the previous run's, the other members see this node as back only once it passes that`, { file, problem: r.damaged })
  }
  const incarnation = nextIncarnation(now, 'last' in r ? r.last : undefined)
  try {
    writeFileDurableSync(file, JSON.stringify({ last: incarnation }) + '\n', { mode: 0o600 })
  } catch (err) {
    log.warn(`the record of this node's advert incarnation cannot be written: ${(err as Error).message}. A later run with its clock behind this one's may not be seen as back`, { file })
  }
  return incarnation
}
