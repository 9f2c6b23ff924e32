// A node that runs on only through the votes lent by members away for a restart is told,
// in its health, that a stop of its agent now gets no restart grace (bb43: a rolling
// graceful stop of a rack killed the VMs of its last half; only the agent log said so).
import test from 'ava'
import { DvmmHealth } from '../../node/dvmm/health.ts'
import { silentLogger } from '../../node/log.ts'
import { Replica } from '../../crdt/replica.ts'
import { MIGRATIONS } from '../../crdt/genesis.ts'
import { fenced } from '../../crdt/placement/index.ts'
import type { MemberTable } from '../../protocol/membership.ts'

test('no majority in sight but votes lent: the health problem says a stop now gets no restart grace; without lent votes it says the fence', t => {
  const r = Replica.create({ clusterId: 'c', nodeId: 'a', migrations: MIGRATIONS })
  r.change(w => {
    for (const n of ['a', 'b', 'c', 'd']) w.put('roll', { node: n, name: n, joined: 1 })
    w.put('vms', { id: 'v1', name: 'v1', app: null, desired: 'running', spec: { driver: 'process', cpu: 0.1, memoryBytes: 2 ** 24, volumes: [], constraints: {}, command: ['/bin/sh'] } })
    w.put('leases', { vm: 'v1', holder: 'a', epoch: 1, cpu: 0.1, memoryBytes: 2 ** 24, status: 'running' })
  })
  const health = (fence: ReturnType<typeof fenced>): DvmmHealth => new DvmmHealth({ peerId: 'a', log: silentLogger, state: { read: () => r.read() }, membership: { members: new Map() as MemberTable }, fence: () => fence }, 'spread')
  const lent = fenced({ rollSize: 4, aliveSeen: 2, lent: 2, lastMajorityAt: 0, now: 1000, fenceTimeoutMs: 5000 })
  const p = health(lent).problems().find(x => x.cause === 'no-majority')
  t.regex(p?.message ?? '', /^this node sees 2 of 4 roll members, and 2 more away for a restart .*; it fences itself once their grace has passed without a majority back\. Stopping this agent now gets it no restart grace \(no majority to confirm one\): the VMs it runs would be killed by its watchdog within its usual timeout \(3\/5 of the fence timeout\) of the stop, and started again when it is back$/)
  // running no VM, a stop costs nothing: not said
  r.change(w => { w.update('leases', 'v1', { status: 'stopped' }) })
  t.notRegex(health(lent).problems().find(x => x.cause === 'no-majority')?.message ?? '', /restart grace/)
  const none = fenced({ rollSize: 4, aliveSeen: 2, lastMajorityAt: 0, now: 1000, fenceTimeoutMs: 5000 })
  t.notRegex(health(none).problems().find(x => x.cause === 'no-majority')?.message ?? '', /restart grace/)
})
