import test from 'ava'
import { Replica, syncPair, listTail, type Draft } from '../../crdt/index.ts'
import { appendLog, appendToLease } from '../../node/dvmm/history.ts'

// A lease's log gains an event per transition: written as an append (and a drop off its
// front once full), not as a new list, so a transition costs the same whatever the log
// holds, and two nodes appending at once both keep their events.
const CLUSTER = 'c0ffee'
let clock = 1_000_000
const replica = (nodeId: string): Replica => Replica.create({ clusterId: CLUSTER, nodeId, now: () => clock++ })
const ev = (i: number, node = 'n1'): { at: number, event: string, node: string, epoch: number } => ({ at: 1_700_000_000_000 + i, event: 'started', node, epoch: 1 })
const lease = (log: unknown[]): Draft<'leases'> => ({ vm: 'v', holder: 'n1', epoch: 1, cpu: 1, memoryBytes: 1 << 20, status: 'running', log })

test('listTail: appended items, dropped front, or null', t => {
  t.deepEqual(listTail([1, 2], [1, 2, 3]), { drop: 0, items: [3] })
  t.deepEqual(listTail([1, 2, 3], [2, 3, 4]), { drop: 1, items: [4] })
  t.deepEqual(listTail([{ a: 1, b: 'x' }], [{ b: 'x', a: 1 }, { a: 2 }]), { drop: 0, items: [{ a: 2 }] })
  t.deepEqual(listTail([], [1]), { drop: 0, items: [1] })
  t.is(listTail([1, 2], [1, 2]), null, 'nothing changed: a plain write')
  t.deepEqual(listTail([1, 2], [2, 1]), { drop: 1, items: [1] })
  t.is(listTail([1, 2], [5]), null, 'replaced: no tail (written whole)')
  t.is(listTail([1, 2], [2, 1, 0].slice(2)), null)
})

test('a log update is an append: its change does not grow with the log, and reads back whole', t => {
  const a = replica('n1')
  let log: unknown[] = []
  for (let i = 0; i < 32; i++) log = appendLog(log, [ev(i)])
  a.change(w => w.put('leases', lease(log)))
  const sizes: number[] = []
  for (let i = 32; i < 40; i++) {
    const heads = a.heads()
    const cur = a.read().get('leases', 'v')!.value
    const next = appendLog(cur.log, [ev(i)])
    a.change(w => w.update('leases', 'v', { log: next }))
    sizes.push(a.saveSince(heads).length)
    t.deepEqual(a.read().get('leases', 'v')!.value.log, next)
  }
  // a whole log of 32 events is over 1 KB compressed; an append of one is a small change
  t.true(Math.max(...sizes) < 400, `change sizes (a whole log: about 1,500 bytes) ${sizes.join(', ')}`)
  t.is((a.read().get('leases', 'v')!.value.log as unknown[]).length, 32)
})

test('two nodes appending at once both keep their events; a third reads the same log', t => {
  const a = replica('n1')
  const b = replica('n2')
  a.change(w => w.put('leases', lease([ev(0)])))
  syncPair(a, b)
  a.change(w => w.update('leases', 'v', { log: appendLog(a.read().get('leases', 'v')!.value.log, [ev(1, 'n1')]) }))
  b.change(w => w.update('leases', 'v', { log: appendLog(b.read().get('leases', 'v')!.value.log, [ev(2, 'n2')]) }))
  t.is(syncPair(a, b).rejected, undefined)
  const la = a.read().get('leases', 'v')!.value.log as Array<{ node: string }>
  t.is(la.length, 3)
  t.deepEqual(la.map(e => e.node).sort(), ['n1', 'n1', 'n2'])
  t.deepEqual(b.read().get('leases', 'v')!.value.log, la)
})

test('two writes of one lease in one change: the later one is written whole (a log short or full: no duplicate, never a mix)', t => {
  for (const n of [1, 32]) {
    const a = replica('n1')
    let log: unknown[] = []
    for (let i = 0; i < n; i++) log = appendLog(log, [ev(i)])
    a.change(w => w.put('leases', lease(log)))
    const cur = a.read().get('leases', 'v')!.value
    a.change(w => {
      w.update('leases', 'v', { log: appendLog(cur.log, [ev(100)]) })
      w.update('leases', 'v', { log: appendLog(cur.log, [ev(101)]) })
    })
    t.deepEqual(a.read().get('leases', 'v')!.value.log, appendLog(cur.log, [ev(101)]), `a log of ${n}: the later update's`)
    // a new claim (put) and an update of the lease it replaces, in one change
    const claimed = appendLog(undefined, [ev(200, 'n2')])
    a.change(w => {
      w.put('leases', { ...lease(claimed), holder: 'n2', epoch: 2 })
      w.update('leases', 'v', { log: appendLog(cur.log, [ev(102)]) })
    })
    t.deepEqual(a.read().get('leases', 'v')!.value.log, appendLog(cur.log, [ev(102)]), `a log of ${n}: the update, whole, not spliced into the put's`)
  }
})

test('other lists are written whole: two nodes rewriting a volume\'s layers at once keep one list', t => {
  const a = replica('n1')
  const b = replica('n2')
  a.change(w => w.put('volumes', { id: 'vol', path: '/v', sizeBytes: 1 << 20, replicas: 1, state: 'ready', parent: null, snapshots: {}, layers: ['vol@1', 'vol'] }))
  syncPair(a, b)
  a.change(w => w.update('volumes', 'vol', { layers: ['vol@1', 'vol', 'x'] }))
  b.change(w => w.update('volumes', 'vol', { layers: ['vol@1', 'vol', 'y'] }))
  syncPair(a, b)
  const layers = a.read().get('volumes', 'vol')!.value.layers!
  t.is(layers.length, 3)
  t.deepEqual(b.read().get('volumes', 'vol')!.value.layers, layers)
})

test('two updates of one object in one change: the later builds on the earlier (Writer.current), so its fields and log events stay', t => {
  const a = replica('n1')
  a.change(w => w.put('leases', lease([ev(0)])))
  a.change(w => {
    // as the VM manager's queued updates run: each reads the lease as this change has it
    const first = w.current('leases', 'v')!
    w.update('leases', 'v', { status: 'starting', reason: 'killed', log: appendLog(first.log, [ev(1)]) })
    const second = w.current('leases', 'v')!
    t.is(second.status, 'starting', 'the earlier update, seen within the change')
    w.update('leases', 'v', { crashes: [5], log: appendLog(second.log, [ev(2)]) })
  })
  const v = a.read().get('leases', 'v')!.value
  t.like(v, { status: 'starting', reason: 'killed', crashes: [5] })
  t.deepEqual(v.log, appendLog(undefined, [ev(0), ev(1), ev(2)]))
  a.change(w => {
    w.remove('leases', 'v')
    t.is(w.current('leases', 'v'), undefined, 'removed in this change')
  })
})

test('appendToLease: another node\'s event goes into the lease\'s log; the lease keeps its at and by, which the left-behind rule reads of a claimed or starting one (rv42)', t => {
  const kill = { at: 1_700_000_000_500, event: 'killed', node: 'n2' }
  for (const status of ['claimed', 'starting', 'running'] as const) {
    const a = replica('n2')
    a.change(w => w.put('leases', { ...lease([ev(0)]), status }))
    const before = a.read().get('leases', 'v')!.value
    let appended: boolean | undefined
    a.change(w => { appended = appendToLease(w, 'v', () => kill, l => l.holder === 'n1') })
    t.true(appended, status)
    const after = a.read().get('leases', 'v')!.value
    t.deepEqual(after.log, appendLog(undefined, [ev(0), kill]), status)
    t.deepEqual({ ...after, log: before.log }, before, `${status}: nothing else changed, its at and by neither`)
    // another replica that syncs it reads the same
    const b = replica('n3')
    syncPair(a, b)
    t.deepEqual(b.read().get('leases', 'v')!.value, after)
    a.change(w => { appended = appendToLease(w, 'v', () => kill, l => l.holder === 'n3') })
    t.false(appended, 'onlyIf')
  }
})
