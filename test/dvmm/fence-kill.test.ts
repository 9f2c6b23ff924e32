// Invariant 3 on one node: once fenced (no majority of the roll for the fence timeout)
// its VMs die before a takeover may start them elsewhere (fence timeout + margin),
// whatever else goes on: a document write that fails or hangs, a graceful stop in its
// grace time, a start in flight. And the decision loop stuck on a write shows in
// loopAgeMs, which gates the watchdog's feed (watchdog/index.ts).
import test from 'ava'
import { readLog } from '../../node/dvmm/history.ts'
import { harness, sleep, until, vmSpec, ME, GiB, type Harness } from './fence-harness.ts'
import type { VmDriver } from '../../node/dvmm/drivers/types.ts'
import type { FakeDriver } from '../../node/dvmm/drivers/fake.ts'

// fence timeout 1 s, margin 0.5 s (harness): a takeover may start the VM 1.5 s after the cut
const TAKEOVER_MS = 1500

async function running (command: string[], wrap?: (d: FakeDriver) => VmDriver): Promise<Harness> {
  return await harness({
    wrap,
    running: [{ id: 'v', command }],
    seed: w => {
      w.put('vms', { id: 'v', name: 'v', app: null, desired: 'running', spec: vmSpec(command) } as never)
      w.put('leases', { vm: 'v', holder: ME, epoch: 1, cpu: 1, memoryBytes: GiB, status: 'running' })
    }
  })
}

const alive = (h: Harness): boolean => { const s = h.fake.vms.get('v')?.state; return s === 'running' || s === 'stopping' || s === 'starting' }

test.serial('control: a fenced node kills its VM before the takeover wait ends', async t => {
  const h = await running(['fake:run'])
  t.teardown(h.stop)
  await sleep(300)
  t.true(alive(h))
  h.cutOff()
  t.true(await until(() => !alive(h), TAKEOVER_MS), 'killed within fence timeout + margin')
  t.true(h.dvmm.fenceState?.fenced)
})

test.serial('a fenced node kills its VM although every document write fails (a full disk)', async t => {
  const h = await running(['fake:run'])
  t.teardown(h.stop)
  await sleep(300)
  h.setWrites('refuse')
  h.dvmm.enqueue(() => {}) // something to write in every step
  h.cutOff()
  t.true(await until(() => !alive(h), TAKEOVER_MS), `killed within fence timeout + margin (VM ${h.fake.vms.get('v')?.state})`)
})

test.serial('a fenced node kills its VM although a document write hangs (a stuck fsync); the stuck loop shows in loopAgeMs', async t => {
  const h = await running(['fake:run'])
  t.teardown(h.stop)
  await sleep(300)
  t.true(h.dvmm.loopAgeMs() < 500, `steps complete: loop age ${h.dvmm.loopAgeMs()} ms`)
  h.setWrites('hang')
  h.dvmm.enqueue(() => {})
  h.cutOff()
  t.true(await until(() => !alive(h), TAKEOVER_MS), `killed within fence timeout + margin (VM ${h.fake.vms.get('v')?.state})`)
  // the hung step's age keeps growing (the watchdog's feed stops at half its timeout)
  t.true(await until(() => h.dvmm.loopAgeMs() > TAKEOVER_MS, 3000), `the stuck step shows: loop age ${h.dvmm.loopAgeMs()} ms`)
})

test.serial('slow steps, spaced by design, never look like a stuck loop: loopAgeMs counts only the step under way', async t => {
  const h = await running(['fake:run'])
  t.teardown(h.stop)
  await sleep(300)
  // every step reads the document for 250 ms of CPU or more: the next waits 4 times that
  h.setWrites('slow')
  const more = setInterval(() => { h.dvmm.enqueue(() => {}) }, 200)
  t.teardown(() => { clearInterval(more) })
  let most = 0
  const writesBefore = h.writes()
  for (const end = Date.now() + 4000; Date.now() < end; await sleep(50)) most = Math.max(most, h.dvmm.loopAgeMs())
  t.true(h.writes() > writesBefore, 'steps went on writing')
  // between steps the age is 0 (counted from the last step's end it reached 1 s here,
  // and with longer steps it passes the half watchdog timeout the feed allows)
  t.true(most < 600, `loop age stayed at most ${most} ms`)
})

test.serial('a fenced node kills a VM in its graceful stop\'s grace time (the stop pre-empted)', async t => {
  const h = await running(['fake:ignore-stop'])
  t.teardown(h.stop)
  await sleep(300)
  void h.dvmm.local.act('v', 'stop', 'node draining') // grace 4 s: it ignores the stop
  await sleep(100)
  t.is(h.fake.vms.get('v')?.state, 'stopping')
  h.cutOff()
  t.true(await until(() => !alive(h), TAKEOVER_MS), `killed within fence timeout + margin (VM ${h.fake.vms.get('v')?.state})`)
})

test.serial('a fenced node kills a VM whose start is in flight (a guest slow to answer, as qemu waits for QMP)', async t => {
  // the driver has the VM running at once but answers start only 4 s later, or when it ends
  const slow = (d: FakeDriver): VmDriver => new Proxy(d, {
    get: (target, key) => {
      if (key === 'start') {
        return async (...a: Parameters<VmDriver['start']>) => {
          const info = await target.start(...a)
          for (let i = 0; i < 40; i++) {
            await sleep(100)
            if (target.node.vms.get(a[0].id)?.state !== 'running') throw new Error('the guest ended while starting')
          }
          return info
        }
      }
      const v = Reflect.get(target, key) as unknown
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v
    }
  })
  const h = await harness({ wrap: slow })
  t.teardown(h.stop)
  await h.replica.change(w => w.put('vms', { id: 'v', name: 'v', app: null, desired: 'running', spec: vmSpec(['fake:run']) } as never))
  h.transition()
  t.true(await until(() => h.dvmm.local.busy.has('v') && h.fake.vms.get('v')?.state === 'running', 3000), 'the start in flight')
  h.cutOff()
  t.true(await until(() => !alive(h), TAKEOVER_MS), `killed within fence timeout + margin (VM ${h.fake.vms.get('v')?.state})`)
  await until(() => !h.dvmm.local.busy.has('v'), 5000)
  t.false(h.dvmm.local.runs.has('v'), 'not counted as running once the start ended')
})

test.serial('a fenced kill stays in this node\'s history when the majority took the lease over meanwhile (its lease update is lost); shown once while the lease says it too', async t => {
  const h = await running(['fake:run'])
  t.teardown(h.stop)
  await sleep(300)
  const cut = Date.now()
  h.cutOff()
  t.true(await until(() => !alive(h), TAKEOVER_MS), 'killed')
  const killed = (): Array<{ at: number, detail?: string }> => h.dvmm.history.of('v').filter(e => e.event === 'killed')
  t.true(await until(() => h.replica.read().get('leases', 'v')?.value.status === 'starting', 2000), 'the lease says so while it is this node\'s')
  t.is(killed().length, 1, 'once, though both the lease and this node have it')
  // the majority's takeover wins: the lease this node updated is gone from the document
  h.replica.change(w => { w.put('leases', { vm: 'v', holder: 'Nb', epoch: 2, cpu: 1, memoryBytes: GiB, status: 'running', from: ME }) })
  h.transition()
  await sleep(300)
  const k = killed()
  t.is(k.length, 1, 'the kill is still in this node\'s history')
  t.regex(k[0]!.detail ?? '', /^killed: fenced: .*; it starts again here once this node sees a majority of the grid, unless the majority has taken it over meanwhile/)
  t.true(k[0]!.at >= cut && k[0]!.at - cut < TAKEOVER_MS, `at the kill (${k[0]!.at - cut} ms after the cut)`)
  // and the new lease's log gets it, for every node's history
  t.true(await until(() => readLog(h.replica.read().get('leases', 'v')?.value.log).events.some(e => e.event === 'killed' && e.node === ME && e.at === k[0]!.at), 3000), 'in the new lease\'s log')
  t.is(killed().length, 1, 'still shown once')
})

test.serial('a VM the fencing watchdog killed while this agent ran on (it stalled) is no crash: the lease and the history say killed by the watchdog, at its time', async t => {
  const h = await running(['fake:run'])
  t.teardown(h.stop)
  await sleep(300)
  const at = Date.now() - 2000 // the watchdog fired 2 s ago, while this agent's loop stood still
  h.driver.killByWatchdog(at)
  t.true(await until(() => h.replica.read().get('leases', 'v')?.value.log != null && JSON.stringify(h.replica.read().get('leases', 'v')?.value.log).includes('fencing watchdog'), 2000), 'the lease says so')
  const l = h.replica.read().get('leases', 'v')!.value
  t.deepEqual(l.crashes ?? [], [], 'no crash counted')
  const k = h.dvmm.history.of('v').filter(e => e.event === 'killed')
  t.is(k.length, 1)
  t.is(k[0]!.at, at, 'when the watchdog killed it')
  t.regex(k[0]!.detail ?? '', /fencing watchdog at .*did not feed it in time/)
  t.true(await until(() => alive(h), 3000), 'started again while the lease is this node\'s')
})
