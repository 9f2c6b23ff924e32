import test from 'ava'
import { allocate, nextFree, nodeAddress, overlayPrefix, preferredIndex, SLOTS, vmAddress, type Claim } from '../../node/lcm/overlay.ts'

test('the prefix is derived from the cluster id: a /16 in 100.64.0.0/10 and a ULA /48', t => {
  const p = overlayPrefix('cluster-a')
  t.deepEqual(overlayPrefix('cluster-a'), p, 'deterministic')
  t.true(p.octet >= 64 && p.octet <= 127)
  t.is(p.v4, `100.${p.octet}.0.0/16`)
  t.is(p.vmV4, `100.${p.octet}.128.0/17`)
  t.regex(p.v6, /^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::\/48$/)
  const others = new Set(Array.from({ length: 50 }, (_, i) => overlayPrefix(`c${i}`).v6))
  t.is(others.size, 50, 'ULA prefixes differ between clusters')
  t.throws(() => overlayPrefix(''), { message: /empty/ })
})

test('node and VM addresses live in separate halves and cover the whole range', t => {
  const p = overlayPrefix('x')
  t.is(vmAddress(p, 0).v4, `100.${p.octet}.128.1`)
  t.is(vmAddress(p, SLOTS - 1).v4, `100.${p.octet}.255.254`)
  t.is(nodeAddress(p, 0).v4, `100.${p.octet}.0.1`)
  t.is(nodeAddress(p, SLOTS - 1).v4, `100.${p.octet}.127.254`)
  t.true(vmAddress(p, 5).v6.startsWith(p.v6.replace('::/48', ':1::')))
  t.throws(() => vmAddress(p, SLOTS), { message: /outside/ })
  t.throws(() => vmAddress(p, -1), { message: /outside/ })
  t.throws(() => vmAddress(p, 1.5), { message: /outside/ })
})

test('stored indexes are kept; a new VM gets the next free index from its hash', t => {
  const a = allocate([{ id: 'web', at: 1, index: 7 }, { id: 'db', at: 2, index: 9 }, { id: 'new', at: 3, index: null }])
  t.deepEqual(a.get('web'), { index: 7, changed: false, reason: 'stored' })
  t.deepEqual(a.get('db'), { index: 9, changed: false, reason: 'stored' })
  t.is(a.get('new')!.index, nextFree('new', new Set([7, 9])))
  t.true(a.get('new')!.changed)
})

test('two VMs never share an index: the earlier claim keeps it, the loser is moved, the same on every node', t => {
  const claims: Claim[] = [{ id: 'b', at: 10, index: 3 }, { id: 'a', at: 10, index: 3 }, { id: 'c', at: 5, index: 4 }]
  const r1 = allocate(claims)
  const r2 = allocate([...claims].reverse())
  t.deepEqual([...r1.entries()].sort(), [...r2.entries()].sort(), 'order of input does not matter')
  t.deepEqual(r1.get('a'), { index: 3, changed: false, reason: 'stored' }, 'same time: the smaller id wins')
  t.true(r1.get('b')!.changed)
  t.regex(r1.get('b')!.reason, /claimed by a/)
  t.not(r1.get('b')!.index, 3)
  t.not(r1.get('b')!.index, 4)
})

test('allocation of many VMs, some colliding, gives distinct indexes, and is stable when a VM moves', t => {
  const claims: Claim[] = Array.from({ length: 2000 }, (_, i) => ({ id: `vm${i}`, at: i, index: i % 3 === 0 ? i % 700 : null }))
  const a = allocate(claims)
  const idx = [...a.values()].map(v => v.index)
  t.is(new Set(idx).size, claims.length)
  // write back the result; allocating again changes nothing (a restart elsewhere keeps it)
  const stored = claims.map(c => ({ ...c, index: a.get(c.id)!.index }))
  t.true([...allocate(stored).values()].every(v => !v.changed))
})

test('a bad stored index is replaced, with the reason', t => {
  const a = allocate([{ id: 'x', at: 1, index: -4 }, { id: 'y', at: 1, index: SLOTS }])
  t.true(a.get('x')!.changed)
  t.regex(a.get('x')!.reason, /invalid/)
  t.true(a.get('y')!.index < SLOTS)
})

test('preferredIndex spreads and stays in range', t => {
  const s = new Set(Array.from({ length: 100 }, (_, i) => preferredIndex(`v${i}`)))
  t.true(s.size > 95)
  t.true([...s].every(i => i >= 0 && i < SLOTS))
  t.throws(() => nextFree('z', new Set(Array.from({ length: SLOTS }, (_, i) => i))), { message: /no free overlay address/ })
})
