// A read of a VM's console log for `vm console` and `--follow` (pure over a read of the
// file's end): the tail, or what came past the offset a follower read up to, as whole
// UTF-8 characters. Counting new output by bytes of a text that was decoded, then
// encoded again on the other side, split characters at the tail's edges (U+FFFD) and
// miscounted any byte that is not UTF-8 (rv45); each poll also moved 64 KiB.

/** where a follower's last read ended, in the run it read */
export interface ConsoleSince { from: number, run: number | null }

/** `text` is the log's bytes [start, size); `run` is when the run began (a new run's log starts over) */
export interface ConsoleRead { text: string, start: number, size: number, run: number | null }

/** the log's last bytes past `from` (at most a bound) and the offset they end at (tailBytes) */
export type TailRead = (from: number) => { tail: Buffer, end: number }

/**
 * What came past `since` (a follower's last end, in the same run, within the log), else
 * the tail: a log cut back or started over, or a new run, is read from its tail again and
 * the answer's `start` tells the follower so.
 */
export function readConsole (read: TailRead, run: number | null, since?: ConsoleSince): ConsoleRead {
  let from = since != null && since.run === run ? since.from : 0
  let r = read(from)
  if (r.end < from) { from = 0; r = read(0) }
  const begin = r.end - r.tail.length
  // a read from the file's start or from where the last one ended begins on a character
  const w = wholeChars(r.tail, begin !== from)
  return { text: w.text, start: begin + w.skip, size: r.end - w.left, run }
}

/**
 * `buf` as whole characters: when it may begin inside one (a tail cut from a longer
 * log), that character's continuation bytes dropped; a last character the guest has not
 * finished writing left for the next read. Bytes that are not UTF-8 at all stay (shown
 * as U+FFFD) and are counted, so nothing is shown twice or skipped.
 */
export function wholeChars (buf: Buffer, mayBeginInside: boolean): { text: string, skip: number, left: number } {
  let skip = 0
  if (mayBeginInside) while (skip < 3 && skip < buf.length && (buf[skip]! & 0xc0) === 0x80) skip++
  let end = buf.length
  for (let i = buf.length - 1; i >= Math.max(skip, buf.length - 3); i--) {
    const b = buf[i]!
    if ((b & 0xc0) === 0x80) continue
    const need = b >= 0xf8 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1
    if (buf.length - i < need) end = i
    break
  }
  return { text: buf.subarray(skip, end).toString('utf8'), skip, left: buf.length - end }
}
