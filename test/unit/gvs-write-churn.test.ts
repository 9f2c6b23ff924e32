// A write whose live nodes change faster than its interval can be recorded fails as a
// moment's failure within its retry time, not a loop without end (rv35).
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024

test('a write under a generation that moves on faster than its interval record completes or fails within its retry time', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'rv35-churn-'))
  const stores: Record<string, ObjectStore> = { A: new ObjectStore({ log: silentLogger }, { dir: join(dir, 'A') }), B: new ObjectStore({ log: silentLogger }, { dir: join(dir, 'B') }) }
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const s of Object.values(stores)) await s.start()
  const transport: ReplicaTransport = { self: 'A', call: async (peer, req, data) => await execute(stores[peer]!, req, data ?? null) }
  let gen = 1
  const churn = setInterval(() => { gen++ }, 10) // a member flapping (C alive, suspect, alive...)
  t.teardown(() => { clearInterval(churn) })
  let rounds = 0
  const v = new ReplicatedVolume({
    transport,
    holders: () => ['A', 'B'],
    nodes: () => ['A', 'B'],
    generation: () => gen,
    // each round records the interval of the nodes it saw (30 ms: a document write and a holds ask)
    beforeWrite: async () => { rounds++; const g = gen; await sleep(30); return g }
  }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 1, retryMs: 500 })
  const started = Date.now()
  const outcome = await Promise.race([
    v.write(0, new Uint8Array(4096).fill(1), true).then(() => 'written', (e: Error) => `failed: ${e.message}`),
    sleep(3000).then(() => 'still pending')
  ])
  t.log({ outcome, rounds, ms: Date.now() - started })
  clearInterval(churn)
  t.regex(outcome, /^failed: .*the live nodes changed 5 times/, 'retryMs is 500 ms: ended, as a moment\'s failure, well before 3 s')
})
