// A VM's console log (node/dvmm/drivers/common.ts): its tail is read from the end (a log
// of gigabytes read whole held the agent's loop for seconds: review rv20), and a log
// past its bound is cut back in place to its last part, while the VM's own descriptor
// (O_APPEND) keeps writing at the new end.
import test from 'ava'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { earlierConsole, tailFile, trimConsole } from '../../node/dvmm/drivers/common.ts'

test('the tail of a console log is read from its end, also past what a Buffer holds; an absent one is empty', t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgt-console-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'console.log')
  t.is(tailFile(file, 100), '')
  writeFileSync(file, 'short\n')
  t.is(tailFile(file, 100), 'short\n')
  // 5 GiB, sparse, then a last line: too big to read whole (and it would take seconds)
  const fd = openSync(file, 'w')
  writeSync(fd, 'the guest is ready\n', 5 * 2 ** 30)
  closeSync(fd)
  t.is(tailFile(file, 19), 'the guest is ready\n')
})

test('a console log past its bound is cut back to its last part, saying so; the VM\'s appends go on at the new end', t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgt-console-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'console.log')
  t.is(trimConsole(file, 1000, 100), 0, 'none: nothing to do')
  writeFileSync(file, 'x'.repeat(1000))
  t.is(trimConsole(file, 1000, 100), 0, 'at the bound: kept')
  // the VM's descriptor, as QEMU's append=on or a process VM's stdout
  const vm = openSync(file, 'a')
  writeSync(vm, `${'y'.repeat(1500)}\nlast line\n`)
  const size = statSync(file).size
  const dropped = trimConsole(file, 1000, 100)
  t.is(dropped, size - 100)
  const kept = readFileSync(file, 'utf8')
  t.regex(kept, new RegExp(`^\\[vgrid: ${dropped} earlier bytes of this console were dropped`))
  t.true(kept.endsWith('y'.repeat(89) + '\nlast line\n'))
  writeSync(vm, 'after the cut\n')
  closeSync(vm)
  t.true(readFileSync(file, 'utf8').endsWith('\nlast line\nafter the cut\n'), 'no hole, no overwrite: the append lands at the new end')
  t.true(statSync(file).size < 300)
})

test('a new run\'s console starts with the run before\'s bytes as they were, from a line when cut, and says how it ended; not those of another VM of the name', t => {
  const old = { state: 'stopped' as const, exit: { code: 1, signal: null, reason: 'crashed' as const, at: 0 }, spec: { incarnation: '100' } }
  const now = Date.parse('2026-12-06T10:00:00Z')
  const bytes = Buffer.from([0xe2, 0x82, 0xac, 0x0a, 0xff, 0x41]) // "€\n", an invalid byte, "A"
  t.deepEqual(earlierConsole({ tail: bytes, cut: false }, old, { incarnation: '100' }, now), Buffer.concat([bytes, Buffer.from('\n[vgrid: the run before ended (crashed, status 1); a new run starts at 2026-12-06T10:00:00.000Z]\n')]))
  t.deepEqual(earlierConsole({ tail: bytes.subarray(1), cut: true }, old, { incarnation: '100' }, now).subarray(0, 2), Buffer.from([0xff, 0x41]), 'cut mid-character: from the first whole line')
  t.is(earlierConsole({ tail: bytes, cut: false }, old, { incarnation: '200' }, now).length, 0, 'a VM made again under the name')
  t.is(earlierConsole({ tail: Buffer.alloc(0), cut: false }, old, { incarnation: '100' }, now).length, 0, 'nothing said: nothing carried')
})
