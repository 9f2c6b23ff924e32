// The crash rule counts a VM's crashes, not a node's: a takeover carries on the recent
// crashes of the lease it takes over, so a VM that keeps crashing (and took its node
// down with it) is left stopped at its third within 24 h, where each node's count began
// anew and it went round the grid for ever. A placement anew (a stopped VM started
// again, a VM made again under its name) starts with none.
import test from 'ava'
import { harness, until, vmSpec, GiB } from './fence-harness.ts'
import { CRASH_WINDOW_MS, recentCrashes } from '../../crdt/placement/index.ts'

test('recentCrashes: those within the window', t => {
  const now = 10 * CRASH_WINDOW_MS
  t.deepEqual(recentCrashes([now - CRASH_WINDOW_MS, now - CRASH_WINDOW_MS + 1, now - 5], now), [now - CRASH_WINDOW_MS + 1, now - 5])
  t.deepEqual(recentCrashes(undefined, now), [])
})

test('a takeover carries on the VM\'s recent crashes; the third crash on the new holder leaves it stopped', async t => {
  const now = Date.now()
  const old = now - CRASH_WINDOW_MS - 60_000
  const h = await harness({
    others: ['Nb', 'Nc'],
    othersState: 'alive',
    seed: w => {
      // crashes after 200 ms of each run
      w.put('vms', { id: 'v', name: 'v', app: null, desired: 'running', created: 7, spec: vmSpec(['fake:exit', '1', '200']) } as never)
      w.put('leases', { vm: 'v', holder: 'Nc', epoch: 3, cpu: 1, memoryBytes: GiB, status: 'running', made: 7, crashes: [old, now - 60_000, now - 30_000] })
      // another VM made again under its name (made: another `created`): nothing carried
      w.put('vms', { id: 'w', name: 'w', app: null, desired: 'running', created: 9, spec: vmSpec(['fake:run']) } as never)
      w.put('leases', { vm: 'w', holder: 'Nc', epoch: 1, cpu: 1, memoryBytes: GiB, status: 'running', made: 8, crashes: [now - 60_000] })
    }
  })
  t.teardown(h.stop)
  // Nc dies: after the fence timeout and the margin this node takes v over
  h.members.set('Nc', { ...h.members.get('Nc')!, state: 'dead' })
  h.transition()
  t.true(await until(() => h.replica.read().get('leases', 'v')?.value.holder === 'Nme', 10_000), 'taken over')
  const taken = h.replica.read().get('leases', 'v')!.value
  t.is(taken.epoch, 4)
  t.true((taken.crashes ?? []).length >= 2, `carried on: ${JSON.stringify(taken.crashes)}`)
  t.false((taken.crashes ?? []).includes(old), 'not one outside the window')
  // its first crash here is its third within 24 h: left stopped, not restarted
  t.true(await until(() => h.replica.read().get('leases', 'v')?.value.status === 'stopped', 10_000), `left stopped: ${JSON.stringify(h.replica.read().get('leases', 'v')?.value)}`)
  t.regex(h.replica.read().get('leases', 'v')!.value.reason ?? '', /3 crashes within 24 h, left stopped/)
  // w's lease was a former VM's of its name: placed anew, with no crash of that one
  t.true(await until(() => h.replica.read().get('leases', 'w')?.value.holder === 'Nme', 10_000))
  t.deepEqual(h.replica.read().get('leases', 'w')!.value.crashes ?? [], [])
})
