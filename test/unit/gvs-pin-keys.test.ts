// The key of VM disks' export names (node/gvs/pin-keys.ts) is kept across restarts:
// QEMU of a running VM reopens its disk with a name made from it.
import test from 'ava'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PinKeys } from '../../node/gvs/pin-keys.ts'
import { createLogger } from '../../node/log.ts'

function setup (t: { teardown: (fn: () => void) => void }): { dir: string, log: ReturnType<typeof createLogger>, lines: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-pinkeys-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const lines: string[] = []
  return { dir, log: createLogger({ write: l => lines.push(l) }), lines }
}

test('a kept key is read again (same export names after a restart); a first start makes and keeps one', async t => {
  const { dir, log } = setup(t)
  const path = join(dir, 'gvs-pin.key')
  const first = new PinKeys(path, log)
  await first.load()
  t.true(first.fresh)
  t.is(statSync(path).mode & 0o777, 0o600)
  const again = new PinKeys(path, log)
  await again.load()
  t.false(again.fresh)
  t.is(again.keyOf('vol-1', 7), first.keyOf('vol-1', 7))
})

test('a key file that cannot be read is left as it is (a reviewer\'s: a read failing for a moment replaced it, and running VMs could not reopen their disks); this run uses a key of its own, saying so', async t => {
  const { dir, log, lines } = setup(t)
  const path = join(dir, 'gvs-pin.key')
  execFileSync('mkfifo', [path])
  const keys = new PinKeys(path, log)
  await keys.load()
  t.true(statSync(path).isFIFO(), 'the file is not replaced')
  t.regex(lines.join('\n'), /cannot be read: this run uses a key of its own and leaves the file as it is/)
  t.is(keys.keyOf('v', 1).length, 24)
  t.false(keys.fresh, 'a key is kept, only unreadable: names without a key are not let in as after a first start')
  // a damaged one (wrong length) is replaced, as before
  rmSync(path)
  writeFileSync(path, 'short', { mode: 0o600 })
  await new PinKeys(path, log).load()
  t.is(readFileSync(path).length, 32)
})
