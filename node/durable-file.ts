// Small files that must survive a power loss whole: keys, the peer book, caches the
// agent reads at start. A file is written to a tmp file beside it (same directory,
// same filesystem: the rename is atomic), fsynced, renamed over the old one, and the
// directory fsynced. Without the file's fsync a crash soon after can leave the new
// name on an empty file (the rename reached the disk, the data not yet); without the
// directory's, the rename itself can be lost (a new key made and handed out, the old
// one back after the reboot). A reader sees the old file or the new one, never half.
//
// The tmp file is created with the final mode (O_EXCL, so a leftover never lends its
// own mode): a key is never readable by others, not even while it is being written.
// Each write has its own tmp name, so two writes to one path do not share a tmp file:
// the last rename wins.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs'
import { open, rename, rm } from 'node:fs/promises'
import { dirname } from 'node:path'

export interface DurableWriteOptions {
  /** the file's mode (less the umask, as for any new file); default 0o666 */
  mode?: number
}

let seq = 0

/** a tmp name beside `path` that no other write of this process uses at the same time */
function tmpFor (path: string): string {
  seq = (seq + 1) % Number.MAX_SAFE_INTEGER
  return `${path}.tmp-${process.pid}-${seq}`
}

/** writes `data` to `path` whole and durably (see above); on failure the old file is left as it was, and no tmp file */
export async function writeFileDurable (path: string, data: string | Uint8Array, opts: DurableWriteOptions = {}): Promise<void> {
  const tmp = tmpFor(path)
  // a tmp of this name can only be left by a dead process with this pid (pids come round again)
  await rm(tmp, { force: true })
  try {
    const fh = await open(tmp, 'wx', opts.mode ?? 0o666)
    try {
      await fh.writeFile(data)
      await fh.sync()
    } finally { await fh.close() }
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {})
    throw err
  }
  await syncDir(dirname(path))
}

/** writeFileDurable for synchronous callers */
export function writeFileDurableSync (path: string, data: string | Uint8Array, opts: DurableWriteOptions = {}): void {
  const tmp = tmpFor(path)
  rmSync(tmp, { force: true })
  try {
    const fd = openSync(tmp, 'wx', opts.mode ?? 0o666)
    try {
      const buf = typeof data === 'string' ? Buffer.from(data) : data
      for (let off = 0; off < buf.byteLength;) off += writeSync(fd, buf, off)
      fsyncSync(fd)
    } finally { closeSync(fd) }
    renameSync(tmp, path)
  } catch (err) {
    try { rmSync(tmp, { force: true }) } catch {}
    throw err
  }
  syncDirSync(dirname(path))
}

/** makes a directory's entries (names created, renamed or removed in it) durable */
export async function syncDir (dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try { await fh.sync() } finally { await fh.close() }
}

export function syncDirSync (dir: string): void {
  const fd = openSync(dir, 'r')
  try { fsyncSync(fd) } finally { closeSync(fd) }
}
