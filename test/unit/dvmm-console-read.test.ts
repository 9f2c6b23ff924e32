// A console read (node/dvmm/drivers/console-read.ts, pure): the tail or what came past a
// follower's last end, as whole UTF-8 characters with the offsets they span; a follower
// printing each answer's text in turn sees the log's text once, whatever the reads cut.
import test from 'ava'
import { readConsole, wholeChars, type ConsoleSince } from '../../node/dvmm/drivers/console-read.ts'

/** a log's reads of at most `bound` bytes, as tailBytes does them */
const reader = (log: Buffer, bound: number) => (from: number) => ({ tail: log.subarray(log.length - Math.max(0, Math.min(bound, log.length - from))), end: log.length })

test('a tail that begins or ends inside a character leaves its bytes out, and counts only what it shows', t => {
  const log = Buffer.from('aé€😀z')
  // 'a' 1 byte, 'é' 2, '€' 3, '😀' 4, 'z' 1: a 6-byte tail begins inside '€'
  const r = readConsole(reader(log, 6), 7)
  t.is(r.text, '😀z')
  t.is(r.start, log.length - 5)
  t.is(r.size, log.length)
  // the guest has written two of the emoji's four bytes: they wait for the next read
  const half = log.subarray(0, 8)
  const h = readConsole(reader(half, 64), 7)
  t.is(h.text, 'aé€')
  t.is(h.size, 6)
  const more = readConsole(reader(log, 64), 7, { from: h.size, run: 7 })
  t.deepEqual(more, { text: '😀z', start: 6, size: log.length, run: 7 })
})

test('bytes that are not UTF-8 are shown as U+FFFD and counted as the bytes they are', t => {
  const log = Buffer.concat([Buffer.from('ok '), Buffer.from([0xff, 0xfe]), Buffer.from(' done\n')])
  const r = readConsole(reader(log, 64), 1, { from: 3, run: 1 })
  t.is(r.text, '\ufffd\ufffd done\n')
  t.is(r.start, 3)
  t.is(r.size, log.length)
  // a lead byte never followed by its continuation is shown once the next character comes
  t.is(wholeChars(Buffer.from([0x41, 0xe2]), false).text, 'A')
  t.is(wholeChars(Buffer.from([0x41, 0xe2, 0x0a]), false).text, 'A\ufffd\n')
})

test('past a follower\'s end only what came since; another run, a log cut back or more than a read holds say so by start', t => {
  const log = Buffer.from('boot\nready\nmore\n')
  const since: ConsoleSince = { from: 11, run: 5 }
  t.deepEqual(readConsole(reader(log, 64), 5, since), { text: 'more\n', start: 11, size: 16, run: 5 })
  t.deepEqual(readConsole(reader(log, 64), 5, { from: 16, run: 5 }), { text: '', start: 16, size: 16, run: 5 })
  // a new run's log is read from its tail: its start is not the follower's end
  t.is(readConsole(reader(log, 64), 9, since).start, 0)
  // a log shorter than the follower's end (cut back, started over): the tail
  const short = Buffer.from('new\n')
  t.deepEqual(readConsole(reader(short, 64), 5, since), { text: 'new\n', start: 0, size: 4, run: 5 })
  // more came than one read holds: it begins past the follower's end
  const r = readConsole(reader(log, 3), 5, { from: 2, run: 5 })
  t.is(r.text, 're\n')
  t.is(r.start, 13)
})

test('a follower that prints each answer\'s text sees the log once, whatever the reads cut', t => {
  const text = 'αβγ → 😀 ok\n'.repeat(40)
  const full = Buffer.from(text)
  let printed = ''
  let since: ConsoleSince | undefined
  // the log grows a few bytes at a time (splitting characters), read each time
  for (let n = 0; n <= full.length; n += 5) {
    const r = readConsole(reader(full.subarray(0, n), 1 << 20), 1, since)
    t.true(since == null || r.start === since.from)
    printed += r.text
    since = { from: r.size, run: 1 }
  }
  printed += readConsole(reader(full, 1 << 20), 1, since).text
  t.is(printed, text)
})
