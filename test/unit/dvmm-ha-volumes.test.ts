// The HA check with volumes and no VM: volumes need a majority in sight as VMs do, so a
// grid that one more loss would leave without one is not HA ok (a tester saw `ha ok`
// with one of three members dead and a volume in use).
import test from 'ava'
import { Replica } from '../../crdt/replica.ts'
import { MIGRATIONS } from '../../crdt/genesis.ts'
import { diskRisks, fenced } from '../../crdt/placement/index.ts'
import { haLines } from '../../node/dvmm/cli.ts'
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

test('diskRisks: a running VM whose disk has one copy (R=1), or needs more copies written than one loss leaves nodes for, is not HA ok', t => {
  const vols = new Map([
    ['v1', { path: '/t/d0', replicas: 1 }],
    ['v2', { path: '/t/d2', replicas: 2 }],
    ['v3', { path: '/t/d3', replicas: 2, minReplicas: 1 }]
  ])
  const vm = (name: string, volumes: string[], desired = 'running'): { name: string, desired: string, spec: { volumes: string[] } } => ({ name, desired, spec: { volumes } })
  t.deepEqual(diskRisks([vm('db', ['v2']), vm('x', ['v3'])], vols, 3), [], 'R=2 on 3 nodes survives any one loss')
  t.deepEqual(diskRisks([vm('db', ['v1'])], vols, 3), [{ vm: 'db', volume: '/t/d0', reason: 'its disk /t/d0 has one copy of each part (R=1): losing the node that holds a part makes the disk unreadable there until that node is back' }])
  t.deepEqual(diskRisks([vm('db', ['v1'], 'stopped')], vols, 3), [], 'a VM meant to stay stopped is no risk')
  t.deepEqual(diskRisks([vm('db', ['v2'])], vols, 2).map(r => r.reason), ['its disk /t/d2 needs 2 copies written (of R=2) and 2 nodes hold copies: losing any one makes its writes fail'])
  t.deepEqual(diskRisks([vm('x', ['v3'])], vols, 2), [], 'min-replicas 1 writes on with one node left')
})

test('the HA check counts VMs\' disks: R=1 under a running VM is not HA ok, and says which', t => {
  const r = Replica.create({ clusterId: 'c', nodeId: 'a', migrations: MIGRATIONS })
  r.change(w => { w.put('roll', { node: 'a', name: 'a', joined: 1 }) })
  const fence = fenced({ rollSize: 1, aliveSeen: 1, lastMajorityAt: 0, now: 0, fenceTimeoutMs: 5000 })
  const health = new DvmmHealth({ peerId: 'a', log: silentLogger, state: { read: () => r.read() }, membership: { members: new Map() as MemberTable }, fence: () => fence }, 'spread')
  r.change(w => {
    w.put('volumes', { id: 'vol-aaaaaaaaaaaa', path: '/t/d0', sizeBytes: 2 ** 20, replicas: 1, state: 'ready', parent: null, snapshots: {} })
    w.put('vms', { id: 'db', name: 'db', app: null, desired: 'running', spec: { driver: 'qemu', cpu: 1, memoryBytes: 2 ** 27, volumes: ['vol-aaaaaaaaaaaa'], constraints: {}, kernel: '/k' } })
  })
  const ha = health.ha()
  t.false(ha.ok)
  t.like(ha.disks?.[0], { vm: 'db', volume: '/t/d0' })
  t.true(haLines(ha).some(l => /^ {2}db: its disk \/t\/d0 has one copy of each part \(R=1\)/.test(l)), haLines(ha).join('\n'))
})
