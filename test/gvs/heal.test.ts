// A damaged copy is rewritten as soon as a read finds it, not at the next scrub: on two
// in-process agents (R=2) a copy is damaged on disk, a read through that node's export
// still returns the written data (from the other copy), and within moments the damaged
// copy verifies clean again, rewritten from the sound one.
import test, { type ExecutionContext } from 'ava'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { apiOf, memoryHosts, sharedDocument, startServices } from './hosts.ts'
import { waitFor } from '../helpers/agent-process.ts'
import type { VolumeView } from '../../node/gvs/routes.ts'
import { GvsService } from '../../node/gvs/service.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024

/** two in-process agents with no scheduled scrub (only a heal or an asked scrub mends a copy), and one R=2 volume made through node 0's API */
async function twoNodes (t: ExecutionContext, tag: string, path: string, size: string): Promise<Awaited<ReturnType<typeof memoryHosts>> & ReturnType<typeof sharedDocument> & { app: ReturnType<typeof apiOf>, id: string }> {
  const g = await memoryHosts(t, 2, tag)
  const doc = sharedDocument(g.hosts)
  await startServices(g, doc, { scrubIntervalMs: 0 })
  const app = apiOf(g.svcs[0]!)
  const created = await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path, size } })
  t.is(created.statusCode, 201, created.body)
  return { ...g, ...doc, app, id: created.json<VolumeView>().id }
}

test('a copy a read finds damaged is rewritten from the sound one at once', async t => {
  const { dir, svcs, id } = await twoNodes(t, 'gvsheal', '/h/data', '16M')
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

test('an object damaged on every copy: repair with scrub says so, fails, and the volume stays degraded until a scrub finds it sound', async t => {
  const { dir, hosts, svcs, state, members, app, id } = await twoNodes(t, 'gvsunsound', '/h/both', '8M')
  await svcs[0]!.device('h/both')!.write(0, randomBytes(8 * MiB), true)
  // both copies of object 1 rot (R=2 on two nodes: one on each)
  for (const a of ['a0', 'a1']) {
    const fh = await open(join(dir, a, 'gvs', 'objects', id, '00000001'), 'r+')
    await fh.write(Buffer.from('bit rot'), 0, 7, 4096)
    await fh.close()
  }
  // the other node's scheduled scrub finds its copy damaged and the only other one too: recorded for every node
  const scrubbed = (await apiOf(svcs[1]!).inject({ method: 'POST', url: '/v1/gvs/scrub', payload: { wait: true } })).json<{ bad: number, unrepaired: Array<{ everyCopy?: boolean, volume?: string }> }>()
  t.like(scrubbed, { bad: 1 })
  t.true(scrubbed.unrepaired[0]?.everyCopy)
  t.like(scrubbed.unrepaired[0], { volume: '/h/both' }, 'the volume named by its path')
  t.deepEqual(Object.keys(state.read().get('volumes', id)!.value.unsound ?? {}), [`${id}/1`], 'the scheduled scrub recorded it')
  t.like((await app.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<VolumeView>().health, { state: 'degraded' })
  const r = await app.inject({ method: 'POST', url: `/v1/volumes/${id}/repair`, payload: { wait: true, scrub: true } })
  const body = r.json<{ failed: number, health: string, errors: string[], scrubbed: Array<{ volume?: string }> }>()
  t.is(body.failed, 2, JSON.stringify(body))
  t.is(body.health, 'degraded')
  t.regex(body.errors.join('\n'), /object 1 of \/h\/both on a[01] is damaged and was not rewritten: no sound copy to rewrite it from: every copy checked .* is damaged/)
  t.deepEqual(body.scrubbed.map(s => s.volume), ['/h/both', '/h/both'], 'the findings name the volume by its path')
  const health = async (): Promise<{ state: string, reasons: string[] }> => (await app.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<VolumeView>().health
  t.like(await health(), { state: 'degraded' })
  t.regex((await health()).reasons.join('\n'), /1 object has blocks damaged on every copy/)
  // and /v1/status says so on each node: not only `vol ls` shows a volume not at full redundancy
  for (const svc of svcs) {
    const p = (await svc.problems()).find(x => x.cause === 'volumes-degraded')
    t.truthy(p, 'a volumes-degraded problem')
    t.regex(p!.message, /1 volume\(s\) are not at full redundancy: \/h\/both degraded \(.*damaged on every copy/)
  }
  // the document records it, so the other node (whatever it coordinates) says so too
  t.deepEqual(Object.keys(state.read().get('volumes', id)!.value.unsound ?? {}), [`${id}/1`])
  const other = apiOf(svcs[1]!)
  const health1 = async (): Promise<{ state: string, reasons: string[] }> => (await other.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<VolumeView>().health
  t.like(await health1(), { state: 'degraded' })
  t.regex((await health1()).reasons.join('\n'), /1 object has blocks damaged on every copy a scrub or a read checked/)
  // a repair without scrub does not look at the data: it keeps what the scrub found
  await app.inject({ method: 'POST', url: `/v1/volumes/${id}/repair`, payload: { wait: true } })
  t.regex((await health()).reasons.join('\n'), /damaged on every copy/)
  // and so does a restart of the node that ran the scrub (gvs-repairs.json)
  const old = svcs[0]!
  await old.stop()
  svcs.splice(0, 1)
  const restarted = new GvsService({ peerId: hosts[0]!.peerId.toString(), log: silentLogger, config: { dataDir: join(dir, 'a0') }, host: hosts[0]!, state, membership: { members } }, { reconcileMs: 0, env: false, scrubIntervalMs: 0 })
  await restarted.start()
  svcs.unshift(restarted)
  const app2 = apiOf(restarted)
  const health2 = async (): Promise<{ state: string, reasons: string[] }> => (await app2.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<VolumeView>().health
  t.like(await health2(), { state: 'degraded' })
  t.regex((await health2()).reasons.join('\n'), /1 object has blocks damaged on every copy/)
  await app2.inject({ method: 'POST', url: `/v1/volumes/${id}/repair`, payload: { wait: true } })
  t.regex((await health2()).reasons.join('\n'), /damaged on every copy/, 'a repair after the restart still carries it')
  // rewritten (a client writes the whole object again): the next scrub finds it sound
  await svcs[0]!.device('h/both')!.write(4 * MiB, randomBytes(4 * MiB), true)
  const again = (await app2.inject({ method: 'POST', url: `/v1/volumes/${id}/repair`, payload: { wait: true, scrub: true } })).json<{ failed: number, health: string }>()
  t.like(again, { failed: 0, health: 'healthy' })
  t.like(await health2(), { state: 'healthy' })
  t.deepEqual(state.read().get('volumes', id)!.value.unsound, {}, 'the record cleared by the scrub that found it sound')
  t.like(await health1(), { state: 'healthy' })
})

test('an object damaged on every copy and rewritten since: a node\'s scheduled scrub clears its record', async t => {
  const { dir, svcs, state, app, id } = await twoNodes(t, 'gvsunsound2', '/h/again', '8M')
  await svcs[0]!.device('h/again')!.write(0, randomBytes(8 * MiB), true)
  for (const a of ['a0', 'a1']) {
    const fh = await open(join(dir, a, 'gvs', 'objects', id, '00000001'), 'r+')
    await fh.write(Buffer.from('bit rot'), 0, 7, 4096)
    await fh.close()
  }
  const scrub = async (): Promise<{ bad: number, sound?: string[] }> => (await apiOf(svcs[1]!).inject({ method: 'POST', url: '/v1/gvs/scrub', payload: { wait: true } })).json()
  t.like(await scrub(), { bad: 1 })
  t.deepEqual(Object.keys(state.read().get('volumes', id)!.value.unsound ?? {}), [`${id}/1`])
  t.like((await app.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<VolumeView>().health, { state: 'degraded' })
  // rewritten whole: the next scheduled scrub finds its copy sound, and the record goes
  await svcs[0]!.device('h/again')!.write(4 * MiB, randomBytes(4 * MiB), true)
  const r = await scrub()
  t.like(r, { bad: 0 })
  t.deepEqual(r.sound, [`${id}/1`])
  t.deepEqual(state.read().get('volumes', id)!.value.unsound, {}, 'the record cleared without a vol repair --scrub')
  t.like((await app.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<VolumeView>().health, { state: 'healthy' })
})

/** a few bytes of rot in `index` of the volume's copies, at a different offset on each node (as `dd conv=notrunc`) */
async function rot (dir: string, id: string, index: number, at: Record<string, number>): Promise<void> {
  for (const [a, offset] of Object.entries(at)) {
    const fh = await open(join(dir, a, 'gvs', 'objects', id, index.toString(16).padStart(8, '0')), 'r+')
    await fh.write(Buffer.from('bit rot'), 0, 7, offset)
    await fh.close()
  }
}

test('an object damaged on every copy in different blocks: repair with scrub assembles a sound copy of their sound blocks, rewrites both, and the volume is healthy', async t => {
  const { dir, svcs, state, app, id } = await twoNodes(t, 'gvsblocks', '/h/blocks', '8M')
  const data = randomBytes(8 * MiB)
  await svcs[0]!.device('h/blocks')!.write(0, data, true)
  await rot(dir, id, 1, { a0: 4096 + 10, a1: 5 * 4096 + 100 })
  t.deepEqual(await svcs[0]!.store.verify(id, 1), [1])
  t.deepEqual(await svcs[1]!.store.verify(id, 1), [5])
  const r = await app.inject({ method: 'POST', url: `/v1/volumes/${id}/repair`, payload: { wait: true, scrub: true } })
  const body = r.json<{ failed: number, health: string, errors: string[] }>()
  t.like(body, { failed: 0, health: 'healthy' }, JSON.stringify(body))
  for (const svc of svcs) {
    t.deepEqual(await svc.store.verify(id, 1), [], 'each copy rewritten sound')
    t.true(Buffer.from(await svc.store.read(id, 1, 0, 4 * MiB)).equals(data.subarray(4 * MiB)), 'holding the written data')
  }
  const health = (await app.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<VolumeView>().health
  t.like(health, { state: 'healthy' }, health.reasons.join('; '))
  t.deepEqual(state.read().get('volumes', id)!.value.unsound ?? {}, {}, 'nothing recorded unreadable')
})

test('so does a node\'s scheduled scrub for its own copy; and an object with a block damaged on every copy is still said unreadable', async t => {
  const { dir, svcs, state, id } = await twoNodes(t, 'gvsblocks2', '/h/blocks2', '8M')
  const data = randomBytes(8 * MiB)
  await svcs[0]!.device('h/blocks2')!.write(0, data, true)
  await rot(dir, id, 1, { a0: 4096, a1: 3 * 4096 })
  await rot(dir, id, 0, { a0: 2 * 4096, a1: 2 * 4096 + 50 })
  const scrubbed = (await apiOf(svcs[1]!).inject({ method: 'POST', url: '/v1/gvs/scrub', payload: { wait: true } })).json<{ bad: number, repaired: number, unrepaired: Array<{ index: number, everyCopy?: boolean, error: string }> }>()
  t.like(scrubbed, { bad: 2, repaired: 1 })
  t.deepEqual(await svcs[1]!.store.verify(id, 1), [], 'object 1 rewritten of both copies\' sound blocks')
  t.true(Buffer.from(await svcs[1]!.store.read(id, 1, 0, 4 * MiB)).equals(data.subarray(4 * MiB)))
  t.is(scrubbed.unrepaired.length, 1)
  t.like(scrubbed.unrepaired[0], { index: 0, everyCopy: true })
  t.regex(scrubbed.unrepaired[0]!.error, /block 2 is damaged on every copy checked/)
  t.deepEqual(Object.keys(state.read().get('volumes', id)!.value.unsound ?? {}), [`${id}/0`], 'only object 0 recorded unreadable')
})

test('a read that finds a block damaged on every copy records it: every node shows the volume degraded, not healthy while its reads fail', async t => {
  const { dir, svcs, state, id } = await twoNodes(t, 'gvsreadunsound', '/h/readbad', '8M')
  await svcs[0]!.device('h/readbad')!.write(0, randomBytes(8 * MiB), true)
  await rot(dir, id, 1, { a0: 4096, a1: 4096 + 20 })
  await t.throwsAsync(async () => await svcs[0]!.device('h/readbad')!.read(4 * MiB + 4096, 4096))
  // the heals of both copies find no sound block 1 anywhere: recorded as a scrub records it
  await waitFor(async () => Object.keys(state.read().get('volumes', id)!.value.unsound ?? {}).length > 0, 10_000, 'the object to be recorded unsound')
  t.deepEqual(Object.keys(state.read().get('volumes', id)!.value.unsound ?? {}), [`${id}/1`])
  for (const svc of svcs) {
    const h = (await apiOf(svc).inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<VolumeView>().health
    t.is(h.state, 'degraded')
    t.regex(h.reasons.join('\n'), /1 object has blocks damaged on every copy a scrub or a read checked/)
  }
})

test('an object recorded damaged on every copy and written whole again: the record clears without a scrub', async t => {
  const { dir, svcs, state, app, id } = await twoNodes(t, 'gvsrewrite', '/h/rewrite', '8M')
  await svcs[0]!.device('h/rewrite')!.write(0, randomBytes(8 * MiB), true)
  await rot(dir, id, 1, { a0: 4096, a1: 4096 + 20 })
  t.like((await apiOf(svcs[1]!).inject({ method: 'POST', url: '/v1/gvs/scrub', payload: { wait: true } })).json<{ bad: number }>(), { bad: 1 })
  t.deepEqual(Object.keys(state.read().get('volumes', id)!.value.unsound ?? {}), [`${id}/1`])
  // a client writes the object anew: each holder verifies its copy, finds it sound, and the record goes
  await svcs[0]!.device('h/rewrite')!.write(4 * MiB, randomBytes(4 * MiB), true)
  await waitFor(() => Object.keys(state.read().get('volumes', id)!.value.unsound ?? {}).length === 0, 10_000, 'the record to clear')
  t.like((await app.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<VolumeView>().health, { state: 'healthy' })
})
