// The live nodes change while a write's interval is being recorded (a document write
// and a round of holds asks): the write must not go to a placement no interval names,
// or, with its holders then gone and an old holder back, a read serves that holder's
// older copy of an acknowledged write (rv34 high).
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { GvsError } from '../../node/gvs/errors.ts'
import { Placement, objectKey } from '../../node/gvs/placement.ts'
import { WriteIntervalRecords } from '../../node/gvs/write-interval-records.ts'
import { activeIntervals } from '../../node/gvs/write-intervals.ts'
import { Replica } from '../../crdt/index.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024
const ns = (...ids: string[]): Array<{ id: string, weight: number }> => ids.map(id => ({ id, weight: 100 }))
const fill = (n: number): Uint8Array => new Uint8Array(4096).fill(n)
const ALL = ['A', 'B', 'C', 'D', 'E']
const hold = (live: string[], i: number): string[] => new Placement(ns(...live)).holders(objectKey('v', i), 2)

test('the live nodes change while a write\'s interval is recorded: the write records the placement it goes to, and an acknowledged write is never read back older', async t => {
  // find an object and nodes Z (away at first), X (dies during the record) that show it
  let pick: { i: number, Z: string, X: string, W: string[] } | null = null
  for (let i = 0; i < 256 && pick == null; i++) {
    for (const Z of ALL) {
      for (const X of ALL) {
        if (X === Z) continue
        const first = hold(ALL.filter(n => n !== Z), i)
        if (!first.includes(X)) continue // X holds the first (old) copy
        const W = hold(ALL.filter(n => n !== X), i) // where the second write really goes
        const left = ALL.filter(n => !W.includes(n))
        // every interval recorded (all-but-Z, all) has a holder of i among those left
        if (!hold(ALL.filter(n => n !== Z), i).some(n => left.includes(n))) continue
        if (!hold(ALL, i).some(n => left.includes(n))) continue
        // the unrecorded one (all-but-X) would have none
        if (hold(ALL.filter(n => n !== X), i).some(n => left.includes(n))) continue
        pick = { i, Z, X, W }
        break
      }
      if (pick != null) break
    }
  }
  if (pick == null) { t.fail('no scenario found'); return }
  const { i, Z, X, W } = pick
  t.log({ object: i, Z, X, wentTo: W })

  const dir = await mkdtemp(join(tmpdir(), 'rv34-iv-'))
  const stores: Record<string, ObjectStore> = {}
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const n of ALL) { stores[n] = new ObjectStore({ log: silentLogger }, { dir: join(dir, n) }); await stores[n].start() }
  const live = new Set(ALL.filter(n => n !== Z))
  let gen = 1
  const setLive = (ns2: string[]): void => { live.clear(); for (const n of ns2) live.add(n); gen++ }
  const transport: ReplicaTransport = {
    self: 'A',
    call: async (peer, req, data) => {
      if (!live.has(peer)) throw new GvsError('unavailable', `replica ${peer} dead (test)`)
      return await execute(stores[peer]!, req, data ?? null)
    }
  }
  // the document, its roll only this node (a majority of one); a hook runs while a record is written
  const doc = Replica.create({ clusterId: 'c', nodeId: 'A' })
  doc.change(w => {
    w.put('volumes', { id: 'V', path: '/t/v', sizeBytes: 8 * MiB, replicas: 2, minReplicas: 2, state: 'ready', parent: null, snapshots: {}, epoch: 1 })
    w.put('roll', { node: 'A', name: 'A', joined: 1 })
  })
  let duringRecord: (() => void) | null = null
  const records = new WriteIntervalRecords({
    self: 'A',
    log: silentLogger,
    state: { read: () => doc.read(), write: async (fn, m) => { await new Promise(resolve => setTimeout(resolve, 20)); duringRecord?.(); duringRecord = null; return doc.change(fn, m).result }, heads: () => doc.heads() },
    alive: n => live.has(n),
    nameOf: n => n,
    generation: () => gen,
    nodes: () => ns(...ALL.filter(n => live.has(n)))
  })
  const vol = (): ReplicatedVolume => new ReplicatedVolume({
    transport,
    holders: (key, r) => new Placement(ns(...ALL.filter(n => live.has(n)))).holders(key, r),
    nodes: () => ALL.filter(n => live.has(n)),
    generation: () => gen,
    intervals: () => records.intervals('V'),
    beforeWrite: async () => await records.before('V'),
    intervalNow: () => records.keyNow()
  }, { volume: 'v', size: (i + 1) * 4 * MiB, replicas: 2, epoch: 1, placementKey: 'v' })

  const offset = i * 4 * MiB
  // 1: written over all but Z (X among its holders)
  const v1 = vol()
  await v1.write(offset, fill(1), true)
  // Z joins: the next write records a new interval; while that record is written, X dies
  setLive(ALL)
  duringRecord = () => { setLive(ALL.filter(n => n !== X)) }
  await v1.write(offset, fill(2), true)
  t.true(W.every(n => stores[n] != null))
  for (const n of W) t.is((await stores[n]!.read('v', i, 0, 1))[0], 2, `the write landed on ${n}`)
  const recorded = Object.values(activeIntervals(doc.read().get('volumes', 'V')!.value)).map(s => s.nodes.map(n => n.id).join(''))
  t.log('intervals recorded', recorded)
  t.true(recorded.includes(ALL.filter(n => n !== X).join('')), 'the placement the write went to is recorded')
  // W's two nodes die; X is back
  setLive(ALL.filter(n => !W.includes(n)))
  const reader = vol()
  const got = await reader.read(offset, 1).then(b => b[0], (e: Error) => e.message)
  t.log('read after the holders of the write died:', got)
  t.not(got, 1, 'an acknowledged write is never read back as the older copy')
  t.regex(String(got), /did not answer|unavailable|not heard|holders/i, 'unavailable until a holder of the write is back')
})
