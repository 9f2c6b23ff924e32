// An object file past the end of every volume that reads its layer (put there by hand:
// nothing writes past a volume's end) is left unchecked by the scrub, said once in its
// report, not "could not be rewritten" at every scrub with the volume shown damaged
// (bb41). Objects within the volume are still checked and a damaged one still found.
import test from 'ava'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { apiOf, memoryHosts, sharedDocument, startServices } from './hosts.ts'
import type { ScrubReport } from '../../node/gvs/scrub.ts'
import type { VolumeView } from '../../node/gvs/routes.ts'

test('a stray object past the volume\'s end is left unchecked and said so; the volume\'s own objects are checked', async t => {
  const grid = await memoryHosts(t, 1, 'gvspastend')
  const doc = sharedDocument(grid.hosts)
  const [svc] = await startServices(grid, doc)
  const api = apiOf(svc!)
  const made = await api.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/s/small', size: '1M', replicas: 1 } })
  t.is(made.statusCode, 201, made.body)
  const id = made.json<VolumeView>().id
  await svc!.device('s/small')!.write(0, randomBytes(64 * 1024), true)
  const dir = join(grid.dir, 'a0', 'gvs', 'objects', id)
  const files = await readdir(dir)
  t.true(files.includes('00000000'), files.join(','))
  // far past the end (names are hex: 255), garbage, no checksums of its own
  await writeFile(join(dir, '000000ff'), randomBytes(4096))
  const r = await api.inject({ method: 'POST', url: '/v1/gvs/scrub', payload: { wait: true } })
  t.is(r.statusCode, 200, r.body)
  const report = r.json<ScrubReport>()
  t.is(report.bad, 0)
  t.deepEqual(report.unrepaired, [])
  t.deepEqual(report.pastEnd, { count: 1, first: [`${id}/255`] })
  t.is(report.objects, 1, 'the volume\'s own object checked')
})
