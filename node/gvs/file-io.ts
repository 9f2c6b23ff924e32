// File I/O under the object store: whole reads and writes (in place up to
// IN_PLACE_READ and IN_PLACE_IO, on libuv's pool when larger), fsync by path, bounded
// parallel work, and the version at the tail of a side file.
import { open, type FileHandle } from 'node:fs/promises'
import { readSync, writeSync } from 'node:fs'
import { GvsError } from './errors.ts'
import { NO_VERSION, VERSION_BYTES, decodeVersion, type Version } from './versions.ts'

/** fsyncs in flight during a flush (libuv's pool has 4 threads by default) */
export const SYNCS_AT_ONCE = 8

/** runs fn over items, at most n at once; the first failure is thrown once all stopped */
export async function inParallel<T> (items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const results = await Promise.allSettled(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!)
  }))
  const failed = results.find(r => r.status === 'rejected')
  if (failed != null) throw failed.reason
}

/** a missing file is what a remove or a late sync wants anyway; anything else is an error */
export function ignoreEnoent (err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
}

/** fsync a file or directory by path (a trailing "/" marks a directory) */
export async function syncPath (path: string): Promise<void> {
  const fh = await open(path.endsWith('/') ? path.slice(0, -1) : path, 'r')
  try { await fh.sync() } finally { await fh.close() }
}

/**
 * Writes up to this size are made in place, not on libuv's thread pool: they copy to
 * the page cache in microseconds, and the hand-over to a pool thread and back cost four
 * to five times the CPU of the copy itself (measured: 4 KiB pwrite 4 us in place, 22 us
 * through the pool). Larger ones, and every fsync, go to the pool, where they run
 * several at once.
 */
export const IN_PLACE_IO = 64 * 1024

/**
 * Reads up to this size are made in place too, and checked there (the store reads
 * larger ones, whole objects, on worker threads: read-workers.ts). A cached 256 KiB
 * read costs less on the event loop than handed to another thread: the copy lands in
 * this core's cache, where the CRC and the socket write read it again, and no thread
 * is woken twice per read. Measured with nbdcopy reading a local volume (bench/
 * gvs-local-read.ts, 1 GiB, 4 alternating rounds, 2 loaded cores): server CPU 0.77 s
 * per GiB in place, 1.15 through the pool, 1.14 on worker threads (qemu-nbd 0.55), and
 * 1.14x qemu-nbd's MB/s against 0.97x and 0.94x (median). A read that misses the page
 * cache holds the event loop for the disk's time: at most 1 MiB's worth.
 */
export const IN_PLACE_READ = 1024 * 1024

/** readFully in place, for a read made without awaiting */
export function readFullySync (fd: number, buf: Uint8Array, position: number): void {
  let done = 0
  while (done < buf.length) {
    const bytesRead = readSync(fd, buf, done, buf.length - done, position + done)
    if (bytesRead === 0) { buf.fill(0, done); break }
    done += bytesRead
  }
}

/** fills buf from position; past the end of the file stays zero (a sparse tail) */
export async function readFully (fh: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  const inPlace = buf.length <= IN_PLACE_READ
  let done = 0
  while (done < buf.length) {
    const bytesRead = inPlace
      ? readSync(fh.fd, buf, done, buf.length - done, position + done)
      : (await fh.read(buf, done, buf.length - done, position + done)).bytesRead
    if (bytesRead === 0) { buf.fill(0, done); break }
    done += bytesRead
  }
}

export async function writeFully (fh: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  const inPlace = buf.length <= IN_PLACE_IO
  let done = 0
  while (done < buf.length) {
    done += inPlace
      ? writeSync(fh.fd, buf, done, buf.length - done, position + done)
      : (await fh.write(buf, done, buf.length - done, position + done)).bytesWritten
  }
}

/** the version at the tail of a side file (NO_VERSION for one from before versions) */
export async function readVersion (sumsPath: string, sumBytes: number): Promise<Version> {
  const fh = await open(sumsPath, 'r')
  try {
    const buf = new Uint8Array(VERSION_BYTES)
    const { bytesRead } = await fh.read(buf, 0, VERSION_BYTES, sumBytes)
    if (bytesRead === 0) return NO_VERSION
    const v = decodeVersion(buf.subarray(0, bytesRead))
    if (v == null) throw new GvsError('damaged', `${sumsPath} ends in no version`)
    return v
  } finally { await fh.close() }
}
