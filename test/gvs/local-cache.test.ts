// The cache a node keeps of its VMs' disks (node/gvs/local-cache.ts), with two
// in-process agents and real NBD sessions: a VM disk's session (NAME~EPOCH, the epoch
// its holder fenced in) reads what it wrote from its node's cache; a plain export caches
// nothing; and whatever lets another writer in (the VM's run ending, a fence at a newer
// epoch, one that never reached the node, a restart) leaves no stale block served.
import test, { type ExecutionContext } from 'ava'
import { connect } from 'node:net'
import { join } from 'node:path'
import { HOLDER_SLOTS, volumeEpoch } from '../../crdt/placement/index.ts'
import { GvsService } from '../../node/gvs/service.ts'
import { silentLogger } from '../../node/log.ts'
import type { Member } from '../../protocol/membership.ts'
import { apiOf, memoryHosts, sharedDocument, startServices } from './hosts.ts'
import { NbdClient } from '../helpers/nbd-client.ts'

const block = (byte: number): Buffer => Buffer.alloc(64 * 1024, byte)

async function twoNodes (t: ExecutionContext, tag: string, writerIdleMs = 300) {
  const g = await memoryHosts(t, 2, tag)
  const doc = sharedDocument(g.hosts)
  await startServices(g, doc, { scrubIntervalMs: 0, writerIdleMs })
  const app = apiOf(g.svcs[0]!)
  t.teardown(async () => { await app.close() })
  const created = await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/c/disk', size: '16M' } })
  t.is(created.statusCode, 201, created.body)
  const id = created.json<{ id: string }>().id
  const open = async (i: number, name: string): Promise<NbdClient> => {
    const c = await NbdClient.open(join(g.dir, `a${i}`, 'nbd.sock'), name)
    t.teardown(async () => { await c.close().catch(() => {}) })
    return c
  }
  /**
   * A VM's disk on node i at `epoch`: the document's epoch raised, fenced in there, opened
   * pinned. Past a plain client's claim (which takes an epoch of its own slot) it is raised
   * as DVMM raises it (volume-epoch.ts), with `epoch` as the lease's.
   */
  const vmDisk = async (i: number, leaseEpoch: number): Promise<NbdClient> => {
    const current = doc.state.read().get('volumes', id)?.value.epoch ?? 1
    const epoch = current >= HOLDER_SLOTS ? volumeEpoch(current, leaseEpoch, g.hosts[i]!.peerId.toString()) : leaseEpoch
    await doc.state.write(w => { w.update('volumes', id, { epoch }) }, 'test: a VM\'s holder')
    await g.svcs[i]!.fence(id, epoch)
    return await open(i, g.svcs[i]!.pinnedExportName('c/disk', epoch))
  }
  /** reads until the cache serves (its writer epoch is checked before first use, off the request) */
  const warm = async (c: NbdClient, svc: GvsService): Promise<void> => {
    for (let i = 0; i < 50 && svc.caches.sizes().bytes === 0; i++) { await c.write(0, await c.read(0, 4096)); await new Promise(resolve => setTimeout(resolve, 20)) }
  }
  /** a VM in the document whose disk the volume is, running on node i (its lease) */
  const vmUses = async (i: number): Promise<void> => {
    const node = g.hosts[i]!.peerId.toString()
    await doc.state.write(w => {
      w.put('vms', { id: 'web', name: 'web', app: null, desired: 'running', spec: { driver: 'qemu', cpu: 1, memoryBytes: 64 * 2 ** 20, volumes: [id], constraints: {}, kernel: '/k' } })
      w.put('leases', { vm: 'web', holder: node, epoch: 1, cpu: 1, memoryBytes: 64 * 2 ** 20, status: 'running' })
    }, 'test: a VM whose disk it is')
  }
  return { g, doc, id, open, vmDisk, warm, vmUses }
}

const IHAVEOPT = 0x49484156454f5054n

/** a raw NBD_OPT_INFO of `name`, then ABORT: a client asking what an export is, without using it */
async function optInfo (socketPath: string, name: string): Promise<void> {
  const s = connect(socketPath)
  await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
  let buf = Buffer.alloc(0)
  s.on('data', d => { buf = Buffer.concat([buf, d]) })
  const until = async (n: number): Promise<void> => { while (buf.length < n) await new Promise(resolve => setTimeout(resolve, 5)) }
  await until(18)
  const flags = Buffer.alloc(4); flags.writeUInt32BE(3); s.write(flags)
  const nm = Buffer.from(name)
  const data = Buffer.alloc(4 + nm.length + 2); data.writeUInt32BE(nm.length, 0); nm.copy(data, 4)
  const h = Buffer.alloc(16); h.writeBigUInt64BE(IHAVEOPT, 0); h.writeUInt32BE(6 /* INFO */, 8); h.writeUInt32BE(data.length, 12)
  s.write(Buffer.concat([h, data]))
  let off = 18
  for (;;) {
    await until(off + 20)
    const type = buf.readUInt32BE(off + 12); const len = buf.readUInt32BE(off + 16)
    await until(off + 20 + len)
    off += 20 + len
    if (type === 1) break // ACK
  }
  const a = Buffer.alloc(16); a.writeBigUInt64BE(IHAVEOPT, 0); a.writeUInt32BE(2 /* ABORT */, 8); a.writeUInt32BE(0, 12)
  s.write(a)
  await new Promise(resolve => setTimeout(resolve, 50))
  s.destroy()
}

test('a VM disk\'s session reads what it wrote from its node\'s cache; a plain export caches nothing', async t => {
  const { g, open, vmDisk, warm } = await twoNodes(t, 'gvscachevm')
  const vm = await vmDisk(0, 5)
  await warm(vm, g.svcs[0]!)
  await vm.write(64 * 1024, block(1))
  const hits = g.svcs[0]!.caches.stats().hits
  t.true((await vm.read(64 * 1024, block(1).length)).equals(block(1)))
  t.is(g.svcs[0]!.caches.stats().hits, hits + 1, 'served from the cache')
  const plain = await open(1, 'c/disk')
  t.true((await plain.read(64 * 1024, block(1).length)).equals(block(1)))
  t.is(g.svcs[1]!.caches.sizes().bytes, 0, 'node 1 has no VM of the volume: nothing cached there')
})

test('the VM\'s run ends: its cache is emptied, and a plain client elsewhere may write before it runs here again', async t => {
  const { g, open, vmDisk, warm } = await twoNodes(t, 'gvscacherun')
  const first = await vmDisk(0, 5)
  await warm(first, g.svcs[0]!)
  await first.write(0, block(1))
  t.true(g.svcs[0]!.caches.sizes().bytes > 0)
  await first.close()
  const plain = await open(1, 'c/disk')
  await plain.write(0, block(2))
  await plain.close()
  const again = await vmDisk(0, 5) // the same run's epoch (a VM restarted under its lease)
  await warm(again, g.svcs[0]!)
  t.true((await again.read(0, block(2).length)).equals(block(2)), 'the plain client\'s write, not the first run\'s')
})

test('a fence at a newer epoch closes the older caches: the old VM session reads the new writer\'s data', async t => {
  const { g, vmDisk, warm } = await twoNodes(t, 'gvscachefence')
  const old = await vmDisk(0, 5)
  await warm(old, g.svcs[0]!)
  await old.write(0, block(3))
  t.true((await old.read(0, block(3).length)).equals(block(3)))
  const vm = await vmDisk(1, 7)
  await vm.write(0, block(4))
  await vm.flush()
  t.true((await old.read(0, block(4).length)).equals(block(4)), 'the fenced writer\'s data, not the cache\'s')
  await t.throwsAsync(old.write(0, block(5)), undefined, 'and the old session may no longer write')
})

test('a claim this node refuses leaves its cache as it is: the VM here goes on reading from it', async t => {
  const { g, open, vmDisk, warm } = await twoNodes(t, 'gvscacherefused')
  const vm = await vmDisk(0, 5)
  await warm(vm, g.svcs[0]!)
  await vm.write(0, block(1))
  const b = await open(1, 'c/disk')
  await t.throwsAsync(b.write(0, block(2)), undefined, 'refused: the VM on node 0 writes it')
  const before = g.svcs[0]!.caches.stats().hits
  for (let i = 0; i < 5; i++) t.true((await vm.read(0, block(1).length)).equals(block(1)))
  t.is(g.svcs[0]!.caches.stats().hits - before, 5)
})

test('a fence that never reached this node: the old VM session\'s writes are refused, and from then on it reads the new writer\'s data', async t => {
  const { g, doc, vmDisk, warm } = await twoNodes(t, 'gvscachemissed')
  const old = await vmDisk(0, 5)
  await warm(old, g.svcs[0]!)
  await old.write(0, block(1))
  // node 0 cut off: node 1 takes the VM over and fences the nodes it sees live (itself)
  const n0 = g.hosts[0]!.peerId.toString()
  const m0 = doc.members.get(n0)!
  doc.members.set(n0, { ...m0, state: 'dead' } as Member)
  const vm = await vmDisk(1, 7)
  doc.members.set(n0, m0)
  await vm.write(0, block(2))
  await vm.flush()
  await t.throwsAsync(old.write(4 * 1024 * 1024, block(5)), undefined, 'refused as stale')
  t.true((await old.read(0, block(2).length)).equals(block(2)), 'the replicas\' bytes')
  // nor is the old epoch fenced in here again
  t.is(await vmDisk(0, 5).catch(() => null), null)
})

test('after an agent restart, no cache is made below the newest writer epoch this node\'s store knows', async t => {
  const { g, doc, open, vmDisk, warm } = await twoNodes(t, 'gvscacherestart')
  const q = await vmDisk(0, 5)
  await warm(q, g.svcs[0]!)
  await q.write(0, block(1))
  await q.close()
  await vmDisk(1, 7)
  // node 0's agent restarts; a QEMU of the old run that was not killed yet reconnects at epoch 5
  await g.svcs[0]!.stop()
  const again = new GvsService({ peerId: g.hosts[0]!.peerId.toString(), log: silentLogger, config: { dataDir: join(g.dir, 'a0') }, host: g.hosts[0]!, state: doc.state, membership: { members: doc.members } }, { reconcileMs: 0, env: false, scrubIntervalMs: 0, writerIdleMs: 300 })
  await again.start()
  g.svcs[0] = again
  const zombie = await open(0, again.pinnedExportName('c/disk', 5))
  for (let i = 0; i < 5; i++) { t.true((await zombie.read(0, block(1).length)).equals(block(1))); await new Promise(resolve => setTimeout(resolve, 50)) }
  const vm = await open(1, g.svcs[1]!.pinnedExportName('c/disk', 7))
  await vm.write(0, block(2))
  await vm.flush()
  t.true((await zombie.read(0, block(2).length)).equals(block(2)), 'the replicas\' bytes')
  t.is(again.caches.sizes().bytes, 0)
})

test('one writer: a VM started under its lease takes the volume from a plain writer elsewhere; a plain writer is refused while a VM uses the volume, also when the VM\'s node does not answer', async t => {
  const { g, open, vmDisk, warm, vmUses } = await twoNodes(t, 'gvscacheonewriter', 30_000)
  const first = await vmDisk(0, 5)
  await first.close()
  const plain = await open(1, 'c/disk')
  await plain.write(0, block(2)) // the VM is down: its claim passes
  await vmUses(0) // the VM runs again under its lease: its holder fences the volume in
  const vm = await vmDisk(0, 5)
  await warm(vm, g.svcs[0]!)
  await vm.write(128 * 1024, block(1))
  await t.throwsAsync(plain.write(128 * 1024, block(3)), { message: /NBD error 1$/ }, 'the plain writer lost the volume to the VM (EPERM)')
  t.true((await vm.read(128 * 1024, block(1).length)).equals(block(1)))
  // the VM's node does not answer claims (a lost stream): the document still names the VM
  const gw = (g.svcs[1] as unknown as { gridWriters: { otherWriters: () => Promise<string | null> } }).gridWriters
  gw.otherWriters = async () => null
  const late = await open(1, 'c/disk')
  await t.throwsAsync(late.write(128 * 1024, block(3)), { message: /NBD error 1$/ })
})

test('a VM disk\'s name opened on another node claims like a plain writer: refused while the VM runs', async t => {
  const { g, open, vmDisk, vmUses } = await twoNodes(t, 'gvscachepinelse')
  await vmUses(0)
  const vm = await vmDisk(0, 5)
  await vm.write(0, block(1))
  // asked from the other node, the VM's session is said as a VM's disk (vm rm left it stopping: not a client to disconnect)
  t.like((await g.svcs[1]!.writersOf(g.svcs[0]!.volumes()[0]!.id)).find(w => w.node === g.hosts[0]!.peerId.toString()), { writers: 1, vmDisks: 1 })
  const other = await open(1, g.svcs[0]!.pinnedExportName('c/disk', 5))
  await t.throwsAsync(other.write(0, block(3)), { message: /NBD error 1$/ })
  // on the VM's own node, the name without its key (vol info prints the epoch), or with
  // another, is a plain client too: a tester wrote under a running VM as c/disk~EPOCH
  // (a key that is no hex, or empty-looking, is a wrong key, not "no volume": a tester)
  for (const name of ['c/disk~5', 'c/disk~5~0123456789abcdef01234567', 'c/disk~5~00', 'c/disk~5~zz']) {
    const bare = await open(0, name)
    await t.throwsAsync(bare.write(0, block(4)), { message: /NBD error 1$/ }, name)
  }
  t.true((await vm.read(0, block(1).length)).equals(block(1)))
})

test('NBD_OPT_INFO of a VM disk\'s name leaves no writer behind: once the VM\'s session ends, its cache is emptied and others may write', async t => {
  const { g, id, open, vmDisk, warm } = await twoNodes(t, 'gvscacheinfo')
  const sock = join(g.dir, 'a0', 'nbd.sock')
  const vm = await vmDisk(0, 5)
  await optInfo(sock, g.svcs[0]!.pinnedExportName('c/disk', 5))
  await warm(vm, g.svcs[0]!)
  await vm.close()
  await new Promise(resolve => setTimeout(resolve, 100))
  await g.svcs[0]!.caches.removed()
  t.is((await g.svcs[0]!.statusAnswer([id], { writersOnly: true }))[id]!.writers, 0, 'no session is open')
  t.is(g.svcs[0]!.caches.sizes().bytes, 0, 'emptied')
  const plain = await open(1, 'c/disk')
  await t.notThrowsAsync(plain.write(0, block(7)), 'a plain writer elsewhere may write once the VM stopped')
})
