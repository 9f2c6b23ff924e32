// The cache a node keeps of the volumes its writers use (node/gvs/local-cache.ts), with
// two in-process agents and real NBD sessions: reads of what a session wrote are
// served from it, and a session that stays open on one node still reads what another
// node's writer wrote since: a claim by that node (a plain export) or a fence at a
// newer epoch (a VM's disk) empties the cache first.
import test from 'ava'
import { join } from 'node:path'
import { pinnedName } from '../../node/gvs/exports.ts'
import { apiOf, memoryHosts, sharedDocument, startServices } from './hosts.ts'
import { NbdClient } from '../helpers/nbd-client.ts'

const block = (byte: number): Buffer => Buffer.alloc(64 * 1024, byte)

async function twoNodes (t: import('ava').ExecutionContext, tag: string): Promise<{ open: (i: number, name: string) => Promise<NbdClient>, svcs: Awaited<ReturnType<typeof startServices>>, id: string }> {
  const g = await memoryHosts(t, 2, tag)
  await startServices(g, sharedDocument(g.hosts), { scrubIntervalMs: 0, writerIdleMs: 300 })
  const app = apiOf(g.svcs[0]!)
  t.teardown(async () => { await app.close() })
  const created = await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/c/disk', size: '16M' } })
  t.is(created.statusCode, 201, created.body)
  const open = async (i: number, name: string): Promise<NbdClient> => {
    const c = await NbdClient.open(join(g.dir, `a${i}`, 'nbd.sock'), name)
    t.teardown(async () => { await c.close().catch(() => {}) })
    return c
  }
  return { open, svcs: g.svcs, id: created.json<{ id: string }>().id }
}

test('a session reads what it wrote from the cache, and what another node wrote since from the replicas (a claim empties the cache)', async t => {
  const { open, svcs } = await twoNodes(t, 'gvscacheclaim')
  const a = await open(0, 'c/disk')
  await a.write(0, block(1))
  const hits = svcs[0]!.caches.stats().hits
  t.true((await a.read(0, block(1).length)).equals(block(1)))
  t.is(svcs[0]!.caches.stats().hits, hits + 1, 'served from the cache')
  // a's client goes quiet (writerIdleMs); a client on the other node writes
  await new Promise(resolve => setTimeout(resolve, 400))
  const b = await open(1, 'c/disk')
  await b.write(0, block(2))
  await b.flush()
  t.true((await a.read(0, block(2).length)).equals(block(2)), 'the open session on node 0 reads the other node\'s write')
})

test('a fence at a newer epoch empties the caches of the older one: the old session reads the new writer\'s data', async t => {
  const { open, svcs, id } = await twoNodes(t, 'gvscachefence')
  const a = await open(0, 'c/disk')
  await a.write(0, block(3))
  t.true((await a.read(0, block(3).length)).equals(block(3)))
  // a VM starts on node 1: its holder fences the volume at its epoch and writes its disk
  await svcs[1]!.fence(id, 7)
  const vm = await open(1, pinnedName('c/disk', 7))
  await vm.write(0, block(4))
  await vm.flush()
  t.true((await a.read(0, block(4).length)).equals(block(4)), 'the fenced writer\'s data, not the cache\'s')
  await t.throwsAsync(a.write(0, block(5)), undefined, 'and the old session may no longer write')
})

test('a node whose sessions only read caches nothing while another node writes: it reads each write of that writer', async t => {
  const { open, svcs } = await twoNodes(t, 'gvscachereader')
  const b = await open(1, 'c/disk')
  await b.write(0, block(1))
  const a = await open(0, 'c/disk')
  t.true((await a.read(0, block(1).length)).equals(block(1)))
  // the writer goes on, without asking again (it wrote within writerIdleMs)
  await b.write(0, block(2))
  t.true((await a.read(0, block(2).length)).equals(block(2)), 'the reader on node 0 did not keep the first read')
  t.is(svcs[0]!.caches.sizes().bytes, 0)
})
