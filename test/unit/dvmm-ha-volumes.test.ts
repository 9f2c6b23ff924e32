// The HA check with volumes and no VM: volumes need a majority in sight as VMs do, so a
// grid that one more loss would leave without one is not HA ok (a tester saw `ha ok`
// with one of three members dead and a volume in use).
import test from 'ava'
import { Replica } from '../../crdt/replica.ts'
import { MIGRATIONS } from '../../crdt/genesis.ts'
import { fenced } from '../../crdt/placement/index.ts'
import { DvmmHealth } from '../../node/dvmm/health.ts'
import { silentLogger } from '../../node/log.ts'
import type { MemberTable } from '../../protocol/membership.ts'

test('with a volume and no VM, 2 of 3 roll members in sight is not HA ok (one more loss fences every node); with neither, it is', t => {
  const r = Replica.create({ clusterId: 'c', nodeId: 'a', migrations: MIGRATIONS })
  r.change(w => { for (const n of ['a', 'b', 'c']) w.put('roll', { node: n, name: n, joined: 1 }) })
  const fence = fenced({ rollSize: 3, aliveSeen: 2, lastMajorityAt: 0, now: 0, fenceTimeoutMs: 5000 })
  const health = new DvmmHealth({ peerId: 'a', log: silentLogger, state: { read: () => r.read() }, membership: { members: new Map() as MemberTable }, fence: () => fence }, 'spread')
  t.true(health.ha().ok, 'nothing to keep: nothing at stake')
  r.change(w => { w.put('volumes', { id: 'vol-aaaaaaaaaaaa', path: '/d/x', sizeBytes: 2 ** 20, replicas: 2, state: 'ready', parent: null, snapshots: {} }) })
  const ha = health.ha()
  t.false(ha.ok)
  t.regex(ha.noMargin ?? '', /^2 of 3 roll members are in sight and a majority is 2: losing any one of them fences every node \(their VMs are killed, nothing is placed, and volumes refuse reads and writes\)/)
})
