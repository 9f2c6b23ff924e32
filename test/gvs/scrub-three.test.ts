// A scheduled scrub on three nodes (R=2: the third node holds no copy of an object)
// that finds an object damaged on both its copies records it in the document, and
// every node shows the volume degraded.
import test from 'ava'
import { open } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { apiOf, memoryHosts, sharedDocument, startServices } from './hosts.ts'
import type { VolumeView } from '../../node/gvs/routes.ts'

const MiB = 1024 * 1024

test('three nodes: an object damaged on both its copies, found by a node\'s scheduled scrub, leaves the volume degraded on every node', async t => {
  const g = await memoryHosts(t, 3, 'gvsscrub3')
  const doc = sharedDocument(g.hosts)
  await startServices(g, doc, { scrubIntervalMs: 0 })
  const app = apiOf(g.svcs[0]!)
  const created = await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/k/v', size: '16M' } })
  t.is(created.statusCode, 201, created.body)
  const id = created.json<VolumeView>().id
  await g.svcs[0]!.device('k/v')!.write(0, randomBytes(16 * MiB), true)
  const holders = ['a0', 'a1', 'a2'].filter(a => existsSync(join(g.dir, a, 'gvs', 'objects', id, '00000002')))
  t.is(holders.length, 2)
  for (const a of holders) {
    const fh = await open(join(g.dir, a, 'gvs', 'objects', id, '00000002'), 'r+')
    await fh.write(Buffer.from('rot!'), 0, 4, 4096)
    await fh.close()
  }
  const at = ['a0', 'a1', 'a2'].indexOf(holders[0]!)
  const scrubbed = (await apiOf(g.svcs[at]!).inject({ method: 'POST', url: '/v1/gvs/scrub', payload: { wait: true } })).json<{ bad: number, unrepaired: Array<{ everyCopy?: boolean, error: string }> }>()
  t.log(JSON.stringify(scrubbed.unrepaired))
  t.like(scrubbed, { bad: 1 })
  // the other holder's copy is damaged too (in the same block), and the third node has none: no sound copy anywhere; named by name
  t.true(scrubbed.unrepaired[0]?.everyCopy)
  t.regex(scrubbed.unrepaired[0]?.error ?? '', /^a[012]: its copy is damaged too; a[012]: no copy; no whole copy could be made of the copies' sound blocks: block 1 is damaged on every copy checked \(a[012], a[012]\)$/)
  t.deepEqual(Object.keys(doc.state.read().get('volumes', id)!.value.unsound ?? {}), [`${id}/2`])
  for (const s of g.svcs) t.like((await apiOf(s).inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<VolumeView>().health, { state: 'degraded' })
})
