// What each node's volume store holds is measured for its advert's free disk: with an
// R=2 volume written whole on two agents, each holds a copy of all of it.
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { apiOf, memoryHosts, sharedDocument, startServices } from './hosts.ts'

const MiB = 1024 * 1024

test('each node measures the bytes its volume store holds', async t => {
  const g = await memoryHosts(t, 2, 'gvsusage')
  const doc = sharedDocument(g.hosts)
  await startServices(g, doc, { scrubIntervalMs: 0 })
  const created = await apiOf(g.svcs[0]!).inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/u/held', size: '8M' } })
  t.is(created.statusCode, 201, created.body)
  const before = await Promise.all(g.svcs.map(async s => await s.measureStored()))
  await g.svcs[0]!.device('u/held')!.write(0, randomBytes(8 * MiB), true)
  for (const [i, s] of g.svcs.entries()) {
    const held = (await s.measureStored())! - before[i]!
    t.true(held >= 8 * MiB && held < 9 * MiB, `node ${i} holds ${held} bytes more`)
    t.is(s.storedBytes(), held + before[i]!)
  }
})
