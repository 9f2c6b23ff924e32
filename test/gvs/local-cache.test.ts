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

async function twoNodes (t: import('ava').ExecutionContext, tag: string, writerIdleMs = 300): Promise<{ open: (i: number, name: string) => Promise<NbdClient>, svcs: Awaited<ReturnType<typeof startServices>>, id: string, state: ReturnType<typeof sharedDocument>['state'] }> {
  const g = await memoryHosts(t, 2, tag)
  const doc = sharedDocument(g.hosts)
  await startServices(g, doc, { scrubIntervalMs: 0, writerIdleMs })
  const app = apiOf(g.svcs[0]!)
  t.teardown(async () => { await app.close() })
  const created = await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/c/disk', size: '16M' } })
  t.is(created.statusCode, 201, created.body)
  const open = async (i: number, name: string): Promise<NbdClient> => {
    const c = await NbdClient.open(join(g.dir, `a${i}`, 'nbd.sock'), name)
    t.teardown(async () => { await c.close().catch(() => {}) })
    return c
  }
  return { open, svcs: g.svcs, id: created.json<{ id: string }>().id, state: doc.state }
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

test('a session of the new epoch on the old writer\'s node caches nothing from the old writer\'s hold: it reads what the VM elsewhere writes', async t => {
  const { open, svcs, state, id } = await twoNodes(t, 'gvscacheholds', 30_000)
  const old = await open(0, 'c/disk') // the epoch-1 writer on node 0, holding the volume for writerIdleMs
  await old.write(1024 * 1024, block(1))
  // a VM's new holder (node 1) raises the epoch and fences it in, then its VM writes
  await state.write(w => { w.update('volumes', id, { epoch: 2 }) }, 'test: a new holder')
  await svcs[1]!.fence(id, 2)
  const vm = await open(1, pinnedName('c/disk', 2))
  const reader = await open(0, 'c/disk') // epoch 2 on node 0
  t.true((await reader.read(0, block(0).length)).equals(block(0)))
  await vm.write(0, block(4))
  await vm.flush()
  t.true((await reader.read(0, block(4).length)).equals(block(4)), 'node 0 serves what the replicas hold')
})

test('after a fence, the old epoch\'s device rebuilt (its old device pruned) gets no cache again', async t => {
  const { open, svcs, state, id } = await twoNodes(t, 'gvscacheprune', 30_000)
  const old = await open(0, 'c/disk')
  await old.write(0, block(1))
  await state.write(w => { w.update('volumes', id, { epoch: 2 }) }, 'test: a new holder')
  await svcs[1]!.fence(id, 2)
  await svcs[0]!.reconcile() // drops the epoch-1 device; the old session's next request builds another
  t.true((await old.read(0, block(1).length)).equals(block(1)))
  const vm = await open(1, pinnedName('c/disk', 2))
  await vm.write(0, block(4))
  await vm.flush()
  t.true((await old.read(0, block(4).length)).equals(block(4)), 'the old session reads what the replicas hold')
})

test('a claim this node refuses leaves its cache as it is: the writer here goes on reading from it', async t => {
  const { open, svcs } = await twoNodes(t, 'gvscacherefused', 30_000)
  const a = await open(0, 'c/disk')
  await a.write(0, block(1))
  const b = await open(1, 'c/disk')
  await t.throwsAsync(b.write(0, block(2)), undefined, 'refused: node 0 writes')
  await a.write(0, block(3))
  const before = svcs[0]!.caches.stats().hits
  for (let i = 0; i < 5; i++) t.true((await a.read(0, block(3).length)).equals(block(3)))
  t.is(svcs[0]!.caches.stats().hits - before, 5)
})
