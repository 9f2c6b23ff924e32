// A damaged copy is rewritten as soon as a read finds it, not at the next scrub: on two
// in-process agents (R=2) a copy is damaged on disk, a read through that node's export
// still returns the written data (from the other copy), and within moments the damaged
// copy verifies clean again, rewritten from the sound one.
import test from 'ava'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { apiOf, memoryHosts, sharedDocument, startServices } from './hosts.ts'
import { waitFor } from '../helpers/agent-process.ts'
import type { VolumeView } from '../../node/gvs/routes.ts'

const MiB = 1024 * 1024

test('a copy a read finds damaged is rewritten from the sound one at once', async t => {
  const { dir, hosts, svcs } = await memoryHosts(t, 2, 'gvsheal')
  const { state, members } = sharedDocument(hosts)
  // no scheduled scrub: only the heal can mend the copy
  await startServices({ dir, hosts, svcs }, { state, members }, { scrubIntervalMs: 0 })
  const app = apiOf(svcs[0]!)
  const created = await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/h/data', size: '16M' } })
  t.is(created.statusCode, 201, created.body)
  const id = created.json<VolumeView>().id
  const data = randomBytes(16 * MiB)
  await svcs[1]!.device('h/data')!.write(0, data, true)

  // bit rot in object 2 on node 0's disk
  const fh = await open(join(dir, 'a0', 'gvs', 'objects', id, '00000002'), 'r+')
  await fh.write(Buffer.from('bit rot'), 0, 7, 123_456)
  await fh.close()
  const block = Math.floor(123_456 / 4096)
  t.deepEqual(await svcs[0]!.store.verify(id, 2), [block])

  // a read through node 0 (its own copy first) still gets the written bytes
  const at = 2 * 4 * MiB + block * 4096
  const got = await svcs[0]!.device('h/data')!.read(at, 4096)
  t.true(Buffer.from(got).equals(data.subarray(at, at + 4096)), 'the read went to the sound copy')
  // and the damaged copy is rewritten without a scrub
  await waitFor(async () => (await svcs[0]!.store.verify(id, 2)).length === 0, 10_000, 'the damaged copy to be rewritten')
  const again = await svcs[0]!.store.read(id, 2, 0, 4 * MiB)
  t.true(Buffer.from(again).equals(data.subarray(2 * 4 * MiB, 3 * 4 * MiB)), 'the local copy holds the written data again')
})
