// A guest whose QEMU does not answer its control socket for QMP_SILENT_MS is said so in
// vm ls (paused, with the reason) and in health, as a guest QEMU paused after a disk
// error is; a guest already said paused stays so; both are taken back once it answers
// (rv36: the reason written was one vm ls and health did not read, nor the clear).
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QemuDriver, QMP_SILENT_MS, pausedWhy } from '../../node/dvmm/drivers/qemu.ts'
import { GUEST_STUCK, guestHeld } from '../../node/dvmm/drivers/types.ts'
import { vmRow } from '../../node/dvmm/vms.ts'
import { silentLogger } from '../../node/log.ts'
import type { Lease, Vm } from '../../crdt/index.ts'

const vm = { id: 'web', name: 'web', app: null, desired: 'running', spec: { driver: 'qemu', cpu: 1, memoryBytes: 2 ** 30, volumes: [], constraints: {}, kernel: '/k' }, at: 1, by: 'a' } as unknown as Vm
const lease = (reason: string): { winner: Lease, claims: Lease[] } => {
  const w = { vm: 'web', holder: 'd', epoch: 1, cpu: 1, memoryBytes: 2 ** 30, at: 2, by: 'd', status: 'running', reason } as Lease
  return { winner: w, claims: [w] }
}

/** a driver whose clock the test moves, and the `paused` events it emits; `silent` is what a failed look calls */
async function driver (t: import('ava').ExecutionContext): Promise<{ events: Array<string | null>, silent: (g: { paused?: string, silentSince?: number }) => void, advance: (ms: number) => void }> {
  let now = 1000
  const dir = await mkdtemp(join(tmpdir(), 'qemu-stuck-'))
  const d = new QemuDriver({ log: silentLogger, clock: { now: () => now } }, { dataDir: dir, pollMs: 1e9 })
  t.teardown(async () => { await d.close(); await rm(dir, { recursive: true, force: true }) })
  const events: Array<string | null> = []
  d.on('paused', e => { events.push(e.why) })
  const rec = { id: 'web', state: 'running', spec: {} }
  return { events, silent: g => { (d as unknown as { qmpSilent: (r: unknown, g: unknown, e: Error) => void }).qmpSilent(rec, g, new Error('QMP: no answer within 2000 ms')) }, advance: ms => { now += ms } }
}

test('QEMU silent for QMP_SILENT_MS: said once, as vm ls and health read a held guest', async t => {
  const d = await driver(t)
  const g = {}
  d.silent(g)
  t.deepEqual(d.events, [], 'not at the first failed look')
  d.advance(QMP_SILENT_MS)
  d.silent(g)
  d.silent(g)
  t.is(d.events.length, 1, 'said once')
  const why = d.events[0]!
  t.true(why.startsWith(GUEST_STUCK))
  t.true(guestHeld(why), 'health and the clear read it')
  const row = vmRow(vm, lease(why), n => n)
  t.is(row.state, 'paused')
  t.regex(row.reason ?? '', /does not answer on its control socket/)
})

test('a guest already paused after a disk error stays said so when its QEMU then goes silent', async t => {
  const d = await driver(t)
  const g = { paused: pausedWhy([], []) }
  d.silent(g)
  d.advance(QMP_SILENT_MS)
  d.silent(g)
  t.deepEqual(d.events, [])
  t.is(vmRow(vm, lease(g.paused), n => n).state, 'paused')
})
