// An object damaged on every copy, found by a scrub through one node, rewritten since and
// found sound by a scrub through the other: every node shows the volume healthy. The node
// whose scrub found it kept its own count beside the document's record, and stayed
// degraded ("a scrub through this node checked") until a scrub through it ran again.
import test from 'ava'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { apiOf, memoryHosts, sharedDocument, startServices } from './hosts.ts'
import type { VolumeView } from '../../node/gvs/routes.ts'

const MiB = 1024 * 1024

test('a sound scrub through another node clears what a scrub through this one found', async t => {
  const g = await memoryHosts(t, 2, 'gvsunsoundclear')
  const doc = sharedDocument(g.hosts)
  await startServices(g, doc, { scrubIntervalMs: 0 })
  const { dir, svcs } = g
  const apps = svcs.map(s => apiOf(s))
  const created = await apps[0]!.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/h/clear', size: '8M' } })
  t.is(created.statusCode, 201, created.body)
  const id = created.json<VolumeView>().id
  await svcs[0]!.device('h/clear')!.write(0, randomBytes(8 * MiB), true)
  for (const a of ['a0', 'a1']) {
    const fh = await open(join(dir, a, 'gvs', 'objects', id, '00000001'), 'r+')
    await fh.write(Buffer.from('bit rot'), 0, 7, 4096)
    await fh.close()
  }
  const repair = async (i: number): Promise<{ failed: number, health: string }> => (await apps[i]!.inject({ method: 'POST', url: `/v1/volumes/${id}/repair`, payload: { wait: true, scrub: true } })).json()
  const health = async (i: number): Promise<{ state: string, reasons: string[] }> => (await apps[i]!.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<VolumeView>().health
  t.like(await repair(0), { health: 'degraded' })
  for (const i of [0, 1]) t.like(await health(i), { state: 'degraded' }, `node ${i}`)
  // a client writes the object anew; a scrub through node 1 finds every copy sound
  await svcs[0]!.device('h/clear')!.write(4 * MiB, randomBytes(4 * MiB), true)
  t.like(await repair(1), { failed: 0, health: 'healthy' })
  t.deepEqual(doc.state.read().get('volumes', id)!.value.unsound, {})
  // vol info's scrub line says this repair's scrub, through the node that ran it
  const lr = (await apps[1]!.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<VolumeView>().health.lastRepair
  t.true(typeof lr?.scrubbedAt === 'number', JSON.stringify(lr))
  // node 0's next pass (a repair without scrub, as its background pass runs) carries its
  // scrub's finding on: the document's word, cleared, is what counts
  t.like((await apps[0]!.inject({ method: 'POST', url: `/v1/volumes/${id}/repair`, payload: { wait: true } })).json<{ failed: number }>(), { failed: 0 })
  for (const i of [0, 1]) {
    const h = await health(i)
    t.is(h.state, 'healthy', `node ${i}: ${h.reasons.join('; ')}`)
  }
})

test('a snapshot\'s object damaged on every copy is named as the snapshot\'s; rewritten through the volume and the snapshot deleted, nothing reads it and a scrub finds the volume healthy', async t => {
  const g = await memoryHosts(t, 2, 'gvsunsoundsnap')
  const doc = sharedDocument(g.hosts)
  await startServices(g, doc, { scrubIntervalMs: 0 })
  const { dir, svcs } = g
  const app = apiOf(svcs[0]!)
  const created = await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/h/snap', size: '8M' } })
  t.is(created.statusCode, 201, created.body)
  const id = created.json<VolumeView>().id
  await svcs[0]!.device('h/snap')!.write(0, randomBytes(8 * MiB), true)
  t.is((await app.inject({ method: 'POST', url: `/v1/volumes/${id}/snapshots`, payload: { name: 's1' } })).statusCode, 201)
  // the volume's first layer is the snapshot's now: its object 1, damaged on both copies
  for (const a of ['a0', 'a1']) {
    const fh = await open(join(dir, a, 'gvs', 'objects', id, '00000001'), 'r+')
    await fh.write(Buffer.from('bit rot'), 0, 7, 4096)
    await fh.close()
  }
  const repair = async (): Promise<{ failed: number, health: string }> => (await app.inject({ method: 'POST', url: `/v1/volumes/${id}/repair`, payload: { wait: true, scrub: true } })).json()
  const health = async (): Promise<{ state: string, reasons: string[] }> => (await app.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<VolumeView>().health
  t.like(await repair(), { health: 'degraded' })
  const before = await health()
  t.is(before.state, 'degraded')
  t.true(before.reasons.some(r => r.includes('(object 1 of /h/snap@s1)')), before.reasons.join('; '))
  // the object written whole through the volume: its top has it (copied up, then
  // overwritten), the snapshot alone reads the damaged copy; still degraded while it exists
  await svcs[0]!.device('h/snap')!.write(4 * MiB, randomBytes(4 * MiB), true)
  t.like(await repair(), { health: 'degraded' })
  t.is((await app.inject({ method: 'DELETE', url: `/v1/volumes/${id}/snapshots/s1` })).statusCode, 200)
  // nothing reads it any more (its layer stays until folded away): a scrub says healthy
  t.like(await repair(), { health: 'healthy' })
  const after = await health()
  t.is(after.state, 'healthy', after.reasons.join('; '))
  // and the background pass after it (a repair without scrub carries the scrub's finding on) too
  t.like((await app.inject({ method: 'POST', url: `/v1/volumes/${id}/repair`, payload: { wait: true } })).json<{ failed: number }>(), { failed: 0 })
  t.is((await health()).state, 'healthy')
})

test('a damaged object shared with a clone: the clone made after the finding carries it from the start; the volume whose own writes cover it is healthy after a scrub, the clone that reads it stays degraded', async t => {
  const g = await memoryHosts(t, 2, 'gvsunsoundclone')
  const doc = sharedDocument(g.hosts)
  await startServices(g, doc, { scrubIntervalMs: 0 })
  const { dir, svcs } = g
  const app = apiOf(svcs[0]!)
  const created = await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/h/base', size: '8M' } })
  t.is(created.statusCode, 201, created.body)
  const id = created.json<VolumeView>().id
  await svcs[0]!.device('h/base')!.write(0, randomBytes(8 * MiB), true)
  t.is((await app.inject({ method: 'POST', url: `/v1/volumes/${id}/snapshots`, payload: { name: 's1' } })).statusCode, 201)
  for (const a of ['a0', 'a1']) {
    const fh = await open(join(dir, a, 'gvs', 'objects', id, '00000001'), 'r+')
    await fh.write(Buffer.from('bit rot'), 0, 7, 4096)
    await fh.close()
  }
  const repair = async (vol: string): Promise<{ failed: number, health: string }> => (await app.inject({ method: 'POST', url: `/v1/volumes/${vol}/repair`, payload: { wait: true, scrub: true } })).json()
  const view = async (vol: string): Promise<VolumeView> => (await app.inject({ method: 'GET', url: `/v1/volumes/${vol}` })).json<VolumeView>()
  t.like(await repair(id), { health: 'degraded' })
  // a clone of the snapshot made now reads the damaged object: degraded from the start, before any read of it
  const clone = await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/h/clone', from: '/h/base@s1' } })
  t.is(clone.statusCode, 201, clone.body)
  const cloneId = clone.json<VolumeView>().id
  const fresh = await view(cloneId)
  t.is(fresh.health.state, 'degraded', 'the clone carries the record')
  t.true(fresh.health.reasons.some(r => /object 1 of \/h\/base@s1/.test(r)), fresh.health.reasons.join('; '))
  // the volume writes the object whole (its top has it) and drops its snapshot: it no longer reads the damaged copy
  await svcs[0]!.device('h/base')!.write(4 * MiB, randomBytes(4 * MiB), true)
  t.is((await app.inject({ method: 'DELETE', url: `/v1/volumes/${id}/snapshots/s1` })).statusCode, 200)
  t.like(await repair(id), { health: 'healthy' }, 'judged by what it reads itself, though the clone reads the layer')
  t.is((await view(id)).health.state, 'healthy')
  // the clone still reads it: its scrub keeps it degraded
  t.like(await repair(cloneId), { health: 'degraded' })
  t.is((await view(cloneId)).health.state, 'degraded')
})
