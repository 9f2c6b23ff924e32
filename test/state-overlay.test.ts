// The sync overlay (node/state/overlay.ts): every agent picks 4 of its connected
// peers by a symmetric pair score; the union must connect the grid.
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { pairScore, pickPeers } from '../node/state/overlay.ts'

const ids = (n: number): string[] => Array.from({ length: n }, () => '12D3KooW' + randomBytes(12).toString('hex'))

function components (nodes: string[], edges: Array<[string, string]>): number {
  const adj = new Map(nodes.map(n => [n, [] as string[]]))
  for (const [a, b] of edges) { adj.get(a)!.push(b); adj.get(b)!.push(a) }
  const seen = new Set<string>()
  let count = 0
  for (const n of nodes) {
    if (seen.has(n)) continue
    count++
    const stack = [n]
    while (stack.length > 0) {
      const x = stack.pop()!
      if (seen.has(x)) continue
      seen.add(x)
      stack.push(...adj.get(x)!)
    }
  }
  return count
}

test('pair scores are symmetric and picks are bounded and exclude self', t => {
  const [a, b, c] = ids(3) as [string, string, string]
  t.is(pairScore(a, b), pairScore(b, a))
  t.not(pairScore(a, b), pairScore(a, c))
  const peers = ids(10)
  const picks = pickPeers(a, [a, ...peers, ...peers])
  t.is(picks.length, 4)
  t.false(picks.includes(a))
  t.deepEqual(pickPeers(a, [...peers].reverse()), picks, 'order of connections does not matter')
})

test('the union of picks connects a fully connected grid of 5 to 200 agents', t => {
  for (const n of [5, 10, 50, 200]) {
    for (let trial = 0; trial < 20; trial++) {
      const nodes = ids(n)
      const edges = nodes.flatMap(self => pickPeers(self, nodes).map(p => [self, p] as [string, string]))
      t.is(components(nodes, edges), 1, `n=${n} trial ${trial}`)
      const degree = new Map(nodes.map(x => [x, new Set<string>()]))
      for (const [x, y] of edges) { degree.get(x)!.add(y); degree.get(y)!.add(x) }
      t.true(Math.max(...[...degree.values()].map(s => s.size)) <= Math.min(n - 1, 40), 'no agent carries everyone')
    }
  }
})

test('with each agent connected to only some others, the overlay still connects them', t => {
  for (let trial = 0; trial < 20; trial++) {
    const nodes = ids(50)
    // each agent dialled 8 random others (connections are symmetric)
    const conns = new Map(nodes.map(x => [x, new Set<string>()]))
    for (const x of nodes) {
      for (const y of [...nodes].sort(() => Math.random() - 0.5).slice(0, 8)) if (y !== x) { conns.get(x)!.add(y); conns.get(y)!.add(x) }
    }
    const edges = nodes.flatMap(self => pickPeers(self, conns.get(self)!).map(p => [self, p] as [string, string]))
    t.is(components(nodes, edges), 1)
  }
})
