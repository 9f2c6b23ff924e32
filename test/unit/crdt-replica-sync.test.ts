// The Replica's cached reads and its shortcut for known changes, against what a
// freshly loaded copy of the same document reads: contested objects changed where
// Automerge's own patches do not look, and changes that arrive before their
// dependencies over several sessions at once.
import test from 'ava'
import { Replica, syncPair, type PeerSync } from '../../crdt/index.ts'
import { prng } from '../helpers/prng.ts'

const CLUSTER = 'c0ffee'
const node = (i: number): string => `12D3KooWNode${i}`
const replica = (i: number): Replica => Replica.create({ clusterId: CLUSTER, nodeId: node(i) })
/** what a copy that never cached anything reads */
const fresh = (r: Replica): Replica => Replica.load({ clusterId: CLUSTER, nodeId: 'reader' }, r.save())
const GiB = 2 ** 30

test('a contested lease reads the same as a fresh copy after either claim changes on its own', t => {
  const [a, b, c] = [1, 2, 3].map(replica) as [Replica, Replica, Replica]
  a.change(w => w.put('vms', { id: 'v', name: 'v', app: null, desired: 'running', spec: { driver: 'process', cpu: 1, memoryBytes: GiB, volumes: [], constraints: {} } }))
  syncPair(a, b)
  // two concurrent claims; c sees both (Automerge shows one of them, by actor order)
  a.change(w => w.put('leases', { vm: 'v', holder: node(1), epoch: 1, cpu: 1, memoryBytes: GiB, status: 'claimed' }))
  b.change(w => w.put('leases', { vm: 'v', holder: node(2), epoch: 1, cpu: 1, memoryBytes: GiB, status: 'claimed' }))
  syncPair(a, c)
  syncPair(b, c)
  t.true(c.read().get('leases', 'v')?.contested)
  // each holder, having seen only its own claim, updates a field of it: one of these
  // changes is inside the value Automerge does not show
  for (const [r, status] of [[a, 'starting'], [b, 'running']] as const) {
    r.change(w => w.update('leases', 'v', { status }))
    syncPair(r, c)
    t.deepEqual(c.read().candidates('leases', 'v'), fresh(c).read().candidates('leases', 'v'))
    t.is(c.read().digest(), fresh(c).read().digest())
  }
})

test('replicas syncing over many sessions at once, writing through forks, converge and read what a fresh copy reads', t => {
  const N = 5
  for (let seed = 1; seed <= 8; seed++) {
    const r = prng(seed)
    const reps = Array.from({ length: N }, (_, i) => replica(i))
    const sessions = new Map<string, PeerSync>()
    const session = (i: number, j: number): PeerSync => {
      let s = sessions.get(`${i}>${j}`)
      if (s == null) sessions.set(`${i}>${j}`, s = reps[i]!.newPeer())
      return s
    }
    const send = (i: number, j: number): boolean => {
      const m = reps[i]!.generate(session(i, j))
      if (m == null) return false
      const res = reps[j]!.receive(session(j, i), m)
      if (!res.ok) throw new Error(res.detail)
      return true
    }
    // local writes as the persister makes them: on a fork, merged later (peers' changes arrive meanwhile)
    const forks: Array<Replica | undefined> = []
    let n = 0
    for (let step = 0; step < 300; step++) {
      const x = r()
      const i = Math.floor(r() * N)
      if (x < 0.3) {
        if (forks[i] != null) reps[i]!.merge(forks[i]!)
        const f = forks[i] = reps[i]!.fork()
        f.change(w => { for (let k = 0; k < 1 + Math.floor(r() * 3); k++) w.setLabel(node(Math.floor(r() * N)), `k${Math.floor(r() * 20)}`, `v${n++}`) })
      } else if (x < 0.4) {
        if (forks[i] != null) reps[i]!.merge(forks[i]!)
        forks[i] = undefined
      } else {
        const j = Math.floor(r() * N)
        if (i !== j) send(i, j)
        reps[j]!.read().all('nodeLabels')
      }
    }
    reps.forEach((rep, i) => { if (forks[i] != null) rep.merge(forks[i]!) })
    for (let round = 0; round < 50; round++) {
      let any = false
      for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) if (i !== j && send(i, j)) any = true
      if (!any) break
    }
    const heads = reps.map(x => x.heads().sort().join())
    t.true(heads.every(h => h === heads[0]), `seed ${seed}: every replica has every change`)
    for (const rep of reps) t.is(rep.read().digest(), fresh(rep).read().digest(), `seed ${seed}: cached reads are current`)
  }
})
