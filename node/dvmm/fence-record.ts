// The fence timeout this node last ran with (activeFenceMs), kept in
// <data-dir>/dvmm/fence.json as {"activeMs": N}: after a restart, until the other
// members' settings are known again, the node runs no longer than that, nor than the
// fence its watchdog was last fed (an older release, which kept no record, ran 5 s).
//
// No record (a new data dir, an older release) reads as none. A record that is there
// but damaged (not JSON, no number, out of range, unreadable) says nothing of how
// long this node ran, and is logged with a warning. The watchdog's last feed still
// says which fence was in force when it was last fed (its `fenceMs`, written right
// after the record at every change while the watchdog is armed, NodeRuntime.setFence,
// and with every feed since): if the feed was written after the record, that is the
// fence this node ran last. Without such a feed (one not written since, as a watchdog
// not armed this run is not fed, or one that gives no fence), it may have run
// a fence as short as any node may set, and a member that knows nothing of it waits
// only that long before taking its VMs over: it counts as the shortest setting
// (MIN_FENCE_TIMEOUT_MS), so the node fences early (it kills its VMs sooner without a
// majority) rather than run a VM twice. The next change of the fence in force writes
// the record anew.
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileDurableSync } from '../durable-file.ts'
import { createLogger, type Logger } from '../log.ts'
import { MAX_FENCE_TIMEOUT_MS, MIN_FENCE_TIMEOUT_MS } from './timing.ts'
import { fedFenceMs, previousTimeouts } from './watchdog/bridge.ts'
import { parseFeed } from './watchdog/decide.ts'
import { watchdogPaths } from './watchdog/paths.ts'

export const fenceRecordFile = (dataDir: string): string => join(dataDir, 'dvmm', 'fence.json')

/** the record: its fence timeout, none (no file), or what is wrong with it */
export type FenceRecord = { activeMs: number } | { none: true } | { damaged: string }

export function readFenceRecord (dataDir: string): FenceRecord {
  let text: string
  try {
    text = readFileSync(fenceRecordFile(dataDir), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { none: true }
    return { damaged: `it cannot be read: ${(err as Error).message}` }
  }
  let v: unknown
  try {
    v = (JSON.parse(text) as { activeMs?: unknown } | null)?.activeMs
  } catch (err) {
    return { damaged: `it is not JSON (${(err as Error).message}): ${JSON.stringify(text.slice(0, 60))}` }
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) return { damaged: `activeMs is ${v === undefined ? 'missing' : JSON.stringify(v)}, not a number of ms` }
  if (v < MIN_FENCE_TIMEOUT_MS || v > MAX_FENCE_TIMEOUT_MS) return { damaged: `activeMs ${v} is outside ${MIN_FENCE_TIMEOUT_MS}-${MAX_FENCE_TIMEOUT_MS} ms` }
  return { activeMs: v }
}

/**
 * The fence this node ran with last: the shorter of its record and the fence timeout
 * of its last watchdog feed, when there is one (undefined: neither, a new data dir).
 * A damaged record counts as the feed's fence where the feed gives one, else as the
 * shortest setting, and is logged (see above).
 */
export function previousFence (dataDir: string, log: Pick<Logger, 'warn'> = createLogger({ component: 'dvmm' })): number | undefined {
  const r = readFenceRecord(dataDir)
  let text: string | undefined
  try {
    text = readFileSync(watchdogPaths(dataDir).feed, 'utf8')
  } catch {}
  const feed = parseFeed(text)
  if ('damaged' in r) {
    // the feed says only if it was written after the record was: a watchdog not armed
    // (no VM started this run) is not fed, and its file keeps an earlier run's fence
    const fed = feedNewer(dataDir) ? fedFenceMs(feed) : undefined
    const fenceMs = fed ?? MIN_FENCE_TIMEOUT_MS
    const runs = fed != null
      ? `the fence timeout of its watchdog's last feed (${fenceMs} ms), the fence in force when it was last fed`
      : `the shortest fence timeout any node may set (${fenceMs} ms), as its watchdog's last feed does not say which it ran: without a majority it kills its VMs that soon, never later than a member may take them over`
    log.warn(`the record of the fence timeout this node last ran with is damaged: ${r.damaged}. Until it knows the other members' settings again this node runs ${runs}. The record is written anew when the fence in force next changes`, { file: fenceRecordFile(dataDir), problem: r.damaged, fenceMs })
    return fenceMs
  }
  // a feed of a release that fed no fenceMs (or one unreadable) ran the default (5 s)
  const fed = text == null ? undefined : previousTimeouts(feed).fenceMs
  if ('none' in r) return fed
  return fed == null ? r.activeMs : Math.min(r.activeMs, fed)
}

/** whether the watchdog's feed file was written after the fence record (both there) */
function feedNewer (dataDir: string): boolean {
  try {
    return statSync(watchdogPaths(dataDir).feed).mtimeMs >= statSync(fenceRecordFile(dataDir)).mtimeMs
  } catch { return false }
}

/** Throws when it cannot be written (the old record is left as it was). */
export function writeFenceRecord (dataDir: string, activeMs: number): void {
  mkdirSync(join(dataDir, 'dvmm'), { recursive: true })
  writeFileDurableSync(fenceRecordFile(dataDir), JSON.stringify({ activeMs }))
}

export function removeFenceRecord (dataDir: string): void {
  try { rmSync(fenceRecordFile(dataDir), { force: true }) } catch {}
}
