// The fence timeout this node last ran with (activeFenceMs), kept in
// <data-dir>/dvmm/fence.json as {"activeMs": N}: after a restart, until the other
// members' settings are known again, the node runs no longer than that, nor than the
// fence its watchdog was last fed (an older release, which kept no record, ran 5 s).
// A damaged or out-of-range record reads as none.
import { mkdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileDurableSync } from '../durable-file.ts'
import { MAX_FENCE_TIMEOUT_MS, MIN_FENCE_TIMEOUT_MS } from './timing.ts'
import { previousTimeouts } from './watchdog/bridge.ts'
import { parseFeed } from './watchdog/decide.ts'
import { watchdogPaths } from './watchdog/paths.ts'

const fileOf = (dataDir: string): string => join(dataDir, 'dvmm', 'fence.json')

export function readFenceRecord (dataDir: string): number | undefined {
  try {
    const v = (JSON.parse(readFileSync(fileOf(dataDir), 'utf8')) as { activeMs?: unknown }).activeMs
    return typeof v === 'number' && Number.isFinite(v) && v >= MIN_FENCE_TIMEOUT_MS && v <= MAX_FENCE_TIMEOUT_MS ? v : undefined
  } catch {
    return undefined
  }
}

/**
 * The fence this node ran with last: the shorter of its record and the fence timeout
 * of its last watchdog feed, when there is one (undefined: neither, a new data dir).
 */
export function previousFence (dataDir: string): number | undefined {
  const record = readFenceRecord(dataDir)
  let fed: number | undefined
  try {
    fed = previousTimeouts(parseFeed(readFileSync(watchdogPaths(dataDir).feed, 'utf8'))).fenceMs
  } catch {}
  if (record == null) return fed
  return fed == null ? record : Math.min(record, fed)
}

/** Throws when it cannot be written (the old record is left as it was). */
export function writeFenceRecord (dataDir: string, activeMs: number): void {
  mkdirSync(join(dataDir, 'dvmm'), { recursive: true })
  writeFileDurableSync(fileOf(dataDir), JSON.stringify({ activeMs }))
}

export function removeFenceRecord (dataDir: string): void {
  try { rmSync(fileOf(dataDir), { force: true }) } catch {}
}
