// The fence timeout this node last ran with (activeFenceMs), kept in
// <data-dir>/dvmm/fence.json as {"activeMs": N}: after a restart, until the other
// members' settings are known again, the node runs no longer than that. A missing or
// damaged file reads as none (a new data dir: the setting).
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const fileOf = (dataDir: string): string => join(dataDir, 'dvmm', 'fence.json')

export function readFenceRecord (dataDir: string): number | undefined {
  try {
    const v = (JSON.parse(readFileSync(fileOf(dataDir), 'utf8')) as { activeMs?: unknown }).activeMs
    return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : undefined
  } catch {
    return undefined
  }
}

/** Throws when it cannot be written (the caller tries again). */
export function writeFenceRecord (dataDir: string, activeMs: number): void {
  const file = fileOf(dataDir)
  mkdirSync(join(dataDir, 'dvmm'), { recursive: true })
  writeFileSync(`${file}.tmp`, JSON.stringify({ activeMs }))
  renameSync(`${file}.tmp`, file)
}

export function removeFenceRecord (dataDir: string): void {
  try { rmSync(fileOf(dataDir), { force: true }) } catch {}
}
