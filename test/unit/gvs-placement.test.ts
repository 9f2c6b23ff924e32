import test from 'ava'
import { Placement, place, objectKey, objectsOf, OBJECT_SIZE, type PlacementNode } from '../../node/gvs/placement.ts'

const nodes = (n: number, weight = 1): PlacementNode[] => Array.from({ length: n }, (_, i) => ({ id: `12D3KooWnode${i}`, weight }))

/** every (object, holder) pair for `objects` objects of one volume */
function assign (ns: readonly PlacementNode[], objects: number, r: number): string[][] {
  const p = new Placement(ns)
  return Array.from({ length: objects }, (_, i) => p.holders(objectKey('vol-a', i), r))
}

function perNode (a: string[][]): Map<string, number> {
  const m = new Map<string, number>()
  for (const hs of a) for (const h of hs) m.set(h, (m.get(h) ?? 0) + 1)
  return m
}

/** replica slots whose holder set changed: objects held by a node before and not after */
function moved (before: string[][], after: string[][]): number {
  let n = 0
  for (let i = 0; i < before.length; i++) {
    const now = new Set(after[i])
    for (const h of before[i] ?? []) if (!now.has(h)) n++
  }
  return n
}

test('replicas are on distinct nodes, primary first, deterministic', t => {
  const ns = nodes(5)
  for (let i = 0; i < 1000; i++) {
    const hs = place(objectKey('v', i), ns, 3)
    t.is(hs.length, 3)
    t.is(new Set(hs).size, 3)
    t.deepEqual(place(objectKey('v', i), [...ns].reverse(), 3), hs, 'node order does not matter')
  }
})

test('fewer nodes than R: every node once; zero weight takes nothing', t => {
  t.deepEqual(place('v/0', nodes(2), 3).sort(), ['12D3KooWnode0', '12D3KooWnode1'])
  const ns = [{ id: 'a', weight: 1 }, { id: 'b', weight: 0 }]
  t.deepEqual(place('v/0', ns, 2), ['a'])
  t.throws(() => place('v/0', [{ id: 'a', weight: 1 }, { id: 'a', weight: 2 }], 1), { message: /listed twice/ })
  t.throws(() => place('v/0', [{ id: 'a', weight: NaN }], 1), { message: /finite/ })
})

test('balance: max/mean objects per node at most 1.05 for equal weights', t => {
  const a = assign(nodes(10), 100_000, 2)
  const counts = [...perNode(a).values()]
  const mean = counts.reduce((x, y) => x + y, 0) / counts.length
  const ratio = Math.max(...counts) / mean
  t.log(`10 nodes, 100000 objects, R=2: max/mean ${ratio.toFixed(4)}`)
  t.true(ratio <= 1.05, `max/mean ${ratio}`)
})

test('balance follows capacity weights', t => {
  const ns = [{ id: 'big', weight: 4 }, { id: 's1', weight: 1 }, { id: 's2', weight: 1 }, { id: 's3', weight: 1 }, { id: 's4', weight: 1 }]
  const c = perNode(assign(ns, 100_000, 1))
  const share = (c.get('big') ?? 0) / 100_000
  t.log(`weight 4 of 8: share ${share.toFixed(4)}`)
  t.true(Math.abs(share - 0.5) < 0.01)
})

test('adding a node moves at most 1.1x the ideal share, only onto the new node', t => {
  const objects = 50_000
  const r = 2
  const before = assign(nodes(8), objects, r)
  const grown = [...nodes(8), { id: '12D3KooWnew', weight: 1 }]
  const after = assign(grown, objects, r)
  const ideal = objects * r / grown.length
  const m = moved(before, after)
  t.log(`add 9th node: moved ${m} replica slots, ideal ${ideal.toFixed(0)}, ratio ${(m / ideal).toFixed(4)}`)
  t.true(m <= 1.1 * ideal)
  for (let i = 0; i < objects; i++) {
    for (const h of after[i] ?? []) if (!(before[i] ?? []).includes(h)) t.is(h, '12D3KooWnew')
  }
})

test('removing a node moves only that node\'s objects', t => {
  const objects = 50_000
  const r = 3
  const all = nodes(8)
  const before = assign(all, objects, r)
  const gone = '12D3KooWnode3'
  const after = assign(all.filter(n => n.id !== gone), objects, r)
  let held = 0
  for (let i = 0; i < objects; i++) {
    const b = before[i] ?? []
    const a = after[i] ?? []
    if (b.includes(gone)) held++
    else t.deepEqual(a, b, `object ${i} did not live on the removed node and must not move`)
    // survivors keep their slots: only the removed node's slot is refilled
    for (const h of b) if (h !== gone && !a.includes(h)) t.fail(`object ${i} lost survivor ${h}`)
  }
  const m = moved(before, after)
  t.log(`remove 1 of 8 nodes: moved ${m} replica slots, the node held ${held}`)
  t.is(m, held)
})

test('objectsOf splits byte ranges at object boundaries', t => {
  t.deepEqual(objectsOf(0, OBJECT_SIZE), { first: 0, last: 0 })
  t.deepEqual(objectsOf(OBJECT_SIZE - 1, 2), { first: 0, last: 1 })
  t.deepEqual(objectsOf(5, 0), { first: 0, last: -1 })
})
