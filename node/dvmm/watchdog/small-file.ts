// The small files the agent and its watchdog keep rewriting (the feed, the supervisor's
// pid and ready marks): each is padded to a fixed width and written whole through a
// temp file, and on a full disk (no block for the temp file) written in place over the
// block the file already has. A feed that failed for want of a block let the watchdog
// fire and kill every VM of a node whose data disk filled up (a tester's 17).
import { closeSync, ftruncateSync, fstatSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs'

/** every such file is this long (JSON and a number read the same with trailing spaces) */
export const SMALL_WIDTH = 512

/**
 * Writes `text` (at most SMALL_WIDTH bytes) as the whole of `path`: through a temp file
 * and a rename, or in place when that fails and the file is there. Answers how; throws
 * when neither worked (the first error).
 */
export function writeSmall (path: string, text: string): 'renamed' | 'in-place' {
  if (Buffer.byteLength(text) > SMALL_WIDTH) throw new Error(`${path}: ${Buffer.byteLength(text)} bytes is over the ${SMALL_WIDTH} a small file holds`)
  const padded = text.padEnd(SMALL_WIDTH)
  const tmp = `${path}.${process.pid}.tmp`
  try {
    writeFileSync(tmp, padded)
    renameSync(tmp, path)
    return 'renamed'
  } catch (err) {
    try { rmSync(tmp, { force: true }) } catch {}
    let fd: number
    try { fd = openSync(path, 'r+') } catch { throw err }
    try {
      writeSync(fd, padded, 0)
      // a longer file (an older release's) ends where this text does: truncating frees, never takes, room
      if (fstatSync(fd).size > SMALL_WIDTH) ftruncateSync(fd, SMALL_WIDTH)
      return 'in-place'
    } catch { throw err } finally { closeSync(fd) }
  }
}
