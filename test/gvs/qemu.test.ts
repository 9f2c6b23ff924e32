// A QEMU guest boots with a replicated volume attached over NBD from a node that holds
// no replica, and reads what another node wrote to it: the volume gets a partition
// table through node A; the guest's kernel, booted on node C, finds the partition.
import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHost, type VgridHost } from '../../protocol/host.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { ReplicaService } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { Placement } from '../../node/gvs/placement.ts'
import { NbdServer } from '../../node/gvs/nbd/server.ts'
import { buildGuestImage } from '../../node/dvmm/image/build.ts'
import { silentLogger } from '../../node/log.ts'

const run = promisify(execFile)
const MiB = 1024 * 1024

async function have (cmd: string): Promise<boolean> { return await run('sh', ['-c', `command -v ${cmd}`]).then(() => true, () => false) }

test('a QEMU guest on another node boots with the volume and reads what was written to it', async t => {
  const missing = (await Promise.all(['qemu-system-x86_64', 'qemu-io'].map(async c => await have(c) ? null : c))).filter(c => c != null)
  if (missing.length > 0 || !existsSync('/bin/busybox')) { t.log(`skipped: missing ${[...missing, existsSync('/bin/busybox') ? '' : 'busybox-static'].filter(Boolean).join(', ')}`); t.pass(); return }
  const dir = await mkdtemp(join(tmpdir(), 'gvs-qemu-'))
  const clusterKey = generateClusterKey()
  const nodes: Array<{ host: VgridHost, store: ObjectStore, svc: ReplicaService, nbd?: NbdServer }> = []
  t.teardown(async () => {
    for (const n of nodes) { await n.nbd?.stop(); await n.svc.stop(); await n.host.stop(); await n.store.stop() }
    await rm(dir, { recursive: true, force: true })
  })
  for (let i = 0; i < 3; i++) {
    const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/gvsqemu${process.pid}-${i}`], mdns: false, transport: 'memory' })
    const store = new ObjectStore({ log: silentLogger }, { dir: join(dir, `n${i}`) })
    await store.start()
    const svc = new ReplicaService({ host, store, log: silentLogger })
    await svc.start()
    nodes.push({ host, store, svc })
  }
  for (const a of nodes) for (const b of nodes) if (a !== b) await a.host.dial(b.host.getMultiaddrs()[0]!)
  // nodes 0 and 1 hold the replicas (R=2); node 2 holds nothing and runs the guest
  const p = new Placement(nodes.slice(0, 2).map(n => ({ id: n.host.peerId.toString(), weight: 1 })))
  const size = 32 * MiB
  const sockets: string[] = []
  for (const [i, n] of nodes.entries()) {
    const dev = new ReplicatedVolume({ transport: n.svc, holders: (k, r) => p.holders(k, r) }, { volume: 'vm-disk', size, replicas: 2, epoch: 1 })
    const sock = join(dir, `nbd${i}.sock`)
    n.nbd = new NbdServer({ log: silentLogger, exports: { get: name => name === 'vm-disk' ? dev : undefined, list: () => ['vm-disk'] } }, { socketPath: sock })
    await n.nbd.start()
    sockets.push(sock)
  }
  // node 0 writes a partition table (an MBR with one Linux partition from sector 2048)
  const mbr = Buffer.alloc(512)
  mbr[446 + 4] = 0x83
  mbr.writeUInt32LE(2048, 446 + 8)
  mbr.writeUInt32LE(size / 512 - 2048, 446 + 12)
  mbr[510] = 0x55
  mbr[511] = 0xaa
  const mbrFile = join(dir, 'mbr.bin')
  await writeFile(mbrFile, mbr)
  await run('qemu-io', ['-f', 'raw', '-c', `write -s ${mbrFile} 0 512`, '-c', 'flush', `nbd+unix:///vm-disk?socket=${sockets[0]!}`])
  t.deepEqual(await nodes[2]!.store.list('vm-disk'), [], 'the guest node holds no replica')

  const image = buildGuestImage(join(dir, 'image'))
  const console: string[] = []
  const qemu = spawn('qemu-system-x86_64', [
    '-machine', 'q35', '-accel', 'tcg', '-cpu', 'max', '-m', '256', '-nographic', '-no-reboot', '-nodefaults', '-serial', 'stdio',
    '-kernel', image.kernel, '-initrd', image.initrd,
    '-append', `${image.cmdline.replace(' quiet', '')} loglevel=7 vgrid.acpi=off vgrid.exit=1`,
    '-drive', `file=nbd+unix:///vm-disk?socket=${sockets[2]!},format=raw,if=virtio,cache=none`
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (qemu.exitCode == null) qemu.kill('SIGKILL') })
  qemu.stdout.on('data', (b: Buffer) => console.push(b.toString()))
  qemu.stderr.on('data', (b: Buffer) => console.push(b.toString()))
  let timer: ReturnType<typeof setTimeout> | undefined
  const exited = await Promise.race([
    new Promise<boolean>(resolve => qemu.once('exit', () => { resolve(true) })),
    new Promise<boolean>(resolve => { timer = setTimeout(() => { resolve(false) }, 90_000) })
  ])
  clearTimeout(timer)
  const out = console.join('')
  t.true(exited, `the guest powered off by itself\n${out.slice(-2000)}`)
  t.regex(out, /\[vda\] 65536 512-byte logical blocks/, 'the guest sees the 32 MiB volume')
  t.regex(out, /vda: vda1/, 'and reads the partition table node 0 wrote')
})
