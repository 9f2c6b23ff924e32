// A scrub that fails (here: the store's objects directory taken away under the agent) is
// said where it is asked for: the status's `failed`, a 503 to a waiting request, and a
// health problem of the node (bb41: `vol scrub --now` waited for ever, nothing logged).
import test from 'ava'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { apiOf, memoryHosts, sharedDocument, startServices } from './hosts.ts'
import type { ScrubStatus } from '../../node/gvs/scrub-schedule.ts'

test('a failed scrub: 503 scrub_failed to a waiting request, `failed` in the status, a scrub-failed health problem; a good scrub clears it', async t => {
  const grid = await memoryHosts(t, 1, 'gvsscrubfail')
  const doc = sharedDocument(grid.hosts)
  const [svc] = await startServices(grid, doc)
  const api = apiOf(svc!)
  const objects = join(grid.dir, 'a0', 'gvs', 'objects')
  await rm(objects, { recursive: true, force: true })
  const r = await api.inject({ method: 'POST', url: '/v1/gvs/scrub', payload: { wait: true } })
  t.is(r.statusCode, 503)
  t.is(r.json().error.code, 'scrub_failed')
  t.regex(r.json().error.message, /^the scrub of this node's copies failed: .*ENOENT/)
  const s = (await api.inject({ method: 'GET', url: '/v1/gvs/scrub' })).json<ScrubStatus>()
  t.is(s.running, null)
  t.regex(s.failed?.error ?? '', /ENOENT/)
  t.true((await svc!.problems()).some(p => p.cause === 'scrub-failed' && /the last scrub of this node's copies failed: .*ENOENT.*vgrid vol scrub --now tries again/.test(p.message)))
  // the directory back: the next scrub succeeds, and nothing says it failed any more
  const { mkdir } = await import('node:fs/promises')
  await mkdir(objects)
  t.is((await api.inject({ method: 'POST', url: '/v1/gvs/scrub', payload: { wait: true } })).statusCode, 200)
  t.is((await api.inject({ method: 'GET', url: '/v1/gvs/scrub' })).json<ScrubStatus>().failed, undefined)
  t.false((await svc!.problems()).some(p => p.cause === 'scrub-failed'))
})
