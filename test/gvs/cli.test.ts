// `vgrid vol ...` against a real HTTP API of one agent's GVS service: create, ls,
// info, resize, mv, import (raw) and export (qcow2) through qemu-img, repair, rm, and
// the errors a user sees.
import test from 'ava'
import Fastify from 'fastify'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtemp, rm, readFile, symlink, writeFile } from 'node:fs/promises'
import { existsSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { createHost } from '../../protocol/host.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import type { Member } from '../../protocol/membership.ts'
import { Replica } from '../../crdt/replica.ts'
import { GvsService, vol } from '../../node/gvs/index.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { toApiError } from '../../node/api/errors.ts'
import { silentLogger } from '../../node/log.ts'
import type { CliError } from '../../node/cli/client.ts'

const run = promisify(execFile)
const MiB = 1024 * 1024
/** an NBD session that wrote within this long counts as a writer (a destroy is refused) */
const WRITER_IDLE_MS = 2000

test('vgrid vol commands', async t => {
  const haveQemuImg = await run('sh', ['-c', 'command -v qemu-img']).then(() => true, () => false)
  const dir = await mkdtemp(join(tmpdir(), 'gvs-cli-'))
  const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey: generateClusterKey(), listen: [`/memory/gvscli${process.pid}`], mdns: false, transport: 'memory' })
  const replica = Replica.create({ clusterId: 'c1', nodeId: host.peerId.toString() })
  const state = { read: () => replica.read(), write: async <T>(fn: Parameters<Replica['change']>[0], message?: string) => replica.change(fn, message).result as T }
  const members = new Map([[host.peerId.toString(), { nodeId: host.peerId.toString(), state: 'alive', advert: { capacity: { diskBytes: 2 ** 40 }, free: { diskBytes: 2 ** 39 } } } as unknown as Member]])
  const svc = new GvsService({ peerId: host.peerId.toString(), log: silentLogger, config: { dataDir: dir }, host, state, membership: { members } }, { writerIdleMs: WRITER_IDLE_MS, env: false })
  await svc.start()
  const app = Fastify()
  app.setErrorHandler((err, _req, reply) => { const e = toApiError(err); void reply.code(e.status).send({ error: { code: e.code, message: e.message } }) })
  svc.routes(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const addr = app.server.address()
  const api = `127.0.0.1:${typeof addr === 'object' && addr != null ? addr.port : 0}`
  t.teardown(async () => { await app.close(); await svc.stop(); await host.stop(); await rm(dir, { recursive: true, force: true }) })

  /** runs a vol command, returning what it printed */
  let onOut: ((s: string) => void) | undefined
  /** what the last command wrote to stdout alone */
  let stdout = ''
  const cli = async (...args: string[]): Promise<string> => {
    const lines: string[] = []
    stdout = ''
    const write = process.stdout.write.bind(process.stdout)
    const writeErr = process.stderr.write.bind(process.stderr)
    // progress goes to stderr (bb50), the result to stdout: both read here, in their
    // order, but for --json, whose stdout is the one answer
    const take = ((s: string) => { lines.push(String(s)); onOut?.(String(s)); return true }) as typeof process.stdout.write
    process.stdout.write = ((s: string) => { stdout += String(s); return take(s) }) as typeof process.stdout.write
    process.stderr.write = args.includes('--json') ? ((s: string) => { onOut?.(String(s)); return true }) as typeof process.stderr.write : take
    try { await vol([...args, '--api', api]) } finally { process.stdout.write = write; process.stderr.write = writeErr }
    return lines.join('')
  }

  t.regex(await cli('create', '/shop/db/data', '--size', '8M'), /\/shop\/db\/data: 8M, R=1/)
  t.regex(await cli('ls'), /\/shop\/db\/data\s+8M\s+1\s+healthy/)
  t.regex(await cli('info', '/shop/db/data'), /nbd\s+nbd\+unix:\/\/\/shop\/db\/data\?socket=/)
  // and who uses it (a tester found vol info silent about a VM running from it)
  t.regex(await cli('info', '/shop/db/data'), /^used by\s+nothing$/m)
  t.like(JSON.parse(await cli('info', '/shop/db/data', '--json')), { path: '/shop/db/data', users: { vms: [], writers: [] } }, '--json has the users too (a tester)')
  t.regex(await cli('resize', '/shop/db/data', '16M'), /16M/)
  t.regex(await cli('resize', '/shop/db/data', '16M'), /^\/shop\/db\/data: 16(\.0)? ?Mi?B?, unchanged \(it is already so\)$/m, 'the size it has (bb53)')
  await t.throwsAsync(cli('resize', '/shop/db/data', '4M'), { message: /shrinking .* is refused/ })
  await t.throwsAsync(cli('create', '/x', '--size', '0'), { message: /positive/ })
  await t.throwsAsync(cli('info', '/nope'), { message: /no volume with id or path/ })
  // many snapshots: the newest few by name, not one line of all (a tester's 127)
  await cli('create', '/shop/snaps', '--size', '4M')
  for (let i = 1; i <= 12; i++) await cli('snapshot', '/shop/snaps', `s${i}`)
  const snaps = (await cli('info', '/shop/snaps')).split('\n').find(l => l.startsWith('snapshots'))!
  t.regex(snaps, /^snapshots 12, the newest 10: s3 \(.*, s12 \(.*\(all: vgrid vol info --json\)$/)
  t.notRegex(snaps, /s2 \(/)
  // a snapshot's own info (bb29: refused as "read-only"), and a clone of it named
  await cli('clone', '/shop/snaps@s5', '/shop/snapclone')
  const snap = await cli('info', '/shop/snaps@s5')
  t.regex(snap, /^\/shop\/snaps@s5\nsnapshot  of \/shop\/snaps \(id .*\), read-only\n/)
  t.regex(snap, /^clones    \/shop\/snapclone$/m)
  t.like(JSON.parse(await cli('info', '/shop/snaps@s5', '--json')), { volume: '/shop/snaps', name: 's5', clones: ['/shop/snapclone'] })
  await t.throwsAsync(cli('info', '/shop/snaps@nosuch'), { message: /has no snapshot "nosuch"/ })
  await cli('rm', '/shop/snapclone')
  await cli('rm', '/shop/snaps', '--snapshots')
  // writes a forget gave up: said beside the state in ls and info, for good (a tester read plain "healthy")
  await cli('create', '/shop/lost', '--size', '4M')
  replica.change(w => { const v = w.reader.list('volumes').find(x => x.path === '/shop/lost')!; w.update('volumes', v.id, { writesGivenUp: [{ node: 'n9', name: 'host9', at: Date.UTC(2026, 11, 4) }] }) })
  t.regex(await cli('ls', '/shop/lost'), /\/shop\/lost\s+4M\s+1\s+healthy, writes given up\s/)
  const lostInfo = await cli('info', '/shop/lost')
  t.regex(lostInfo, /^state\s+healthy, writes given up \(below\)$/m)
  t.regex(lostInfo, /^given up  writes that may have been only on host9, forgotten 2026-12-04T00:00:00.000Z \(vgrid node forget --force\): an object with no copy left reads as zeros$/m)
  await cli('rm', '/shop/lost')
  // a volume a VM has as a disk, renamed: the VM keeps it by id, and vol mv says so (bb50: a
  // restore by clone and rename booted the old disk, and nothing said so)
  await cli('create', '/shop/disk', '--size', '4M')
  const diskId = replica.read().list('volumes').find(x => x.path === '/shop/disk')!.id
  replica.change(w => { w.put('vms', { id: 'dbguest', name: 'dbguest', app: null, desired: 'stopped', spec: { driver: 'process', cpu: 1, memoryBytes: 2 ** 30, volumes: [diskId], constraints: {}, command: ['x'] } }) })
  t.is(await cli('mv', '/shop/disk', '/shop/disk'), '/shop/disk: unchanged (it is already so)\n', 'onto its own path: nothing changed (bb53)')
  t.regex(await cli('mv', '/shop/disk', '/shop/disk.old'), /^\/shop\/disk -> \/shop\/disk\.old\n {2}VM dbguest has it as a disk and keeps it under \/shop\/disk\.old \(a VM names its volumes by id, not path; to give it another volume: vgrid vm stop dbguest, then vgrid vm update dbguest --detach \/shop\/disk\.old --attach PATH\)\n?$/)
  replica.change(w => { w.remove('vms', 'dbguest') })
  t.is((await cli('mv', '/shop/disk.old', '/shop/disk')).trim(), '/shop/disk.old -> /shop/disk', 'no VM: nothing more said')
  await cli('rm', '/shop/disk')
  // one argument too many is refused, not dropped (rm A B removed A only)
  await t.throwsAsync(cli('rm', '/shop/db/data', '/shop/db/other'), { message: /^vgrid vol rm takes 1 argument, not 2: "\/shop\/db\/other" is more/ })
  await t.throwsAsync(cli('resize', '/shop/db/data', '32M', '64M'), { message: /^vgrid vol resize takes 2 arguments, not 3/ })
  // a flag of another subcommand is refused, not ignored (rm --force removed it)
  const wrongFlag = await t.throwsAsync(cli('rm', '/shop/db/data', '--force'), { message: /^vgrid vol rm: --force is not one of its flags\nusage: vgrid vol rm VOL/ })
  t.notRegex(wrongFlag?.message ?? '', /vol create/, 'only the subcommand\'s usage, not every one\'s')
  // the set form's order: the name first (a path first was taken for the name, and its volume not found)
  await t.throwsAsync(cli('snapshot', '/shop/db/data', 's9', '--set'), { message: /^vgrid vol snapshot --set takes the snapshot's name first, then the volumes: "\/shop\/db\/data" is a volume path, not a name/ })
  // the file is checked before anything starts
  await t.throwsAsync(cli('import', join(dir, 'nothing.raw'), '/shop/db/data'), { message: /nothing\.raw: no such file \(import reads an image file\)$/ })
  await t.throwsAsync(cli('import', dir, '/shop/db/data'), { message: /is a directory: import reads an image file$/ })
  await t.throwsAsync(cli('export', '/shop/db/data', join(dir, 'no', 'such', 'out.raw')), { message: /no\/such does not exist: export writes out\.raw there$/ })
  await t.throwsAsync(cli('export', '/shop/db/data', join(dir, 'nodir') + '/'), { message: /nodir\/ names a directory: export writes an image file \(give its name, e\.g\. .*nodir\/disk\.raw\)$/ }, 'a path ending in / (bb54: a raw EISDIR)')
  // not stdin or stdout (bb50: a file named "-" was written)
  for (const args of [['export', '/shop/db/data', '-'], ['import', '-', '/shop/db/data']]) {
    const e = await t.throwsAsync(cli(...args), { message: /^"-": vgrid vol (export writes an image file, not stdout|import reads an image file, not stdin); give the file's path \(\.\/- for a file of that name\)$/ })
    t.is((e as CliError).exitCode, 2)
  }
  t.false(existsSync('-'))
  // a character device takes no image (qemu-img said "Cannot grow device files" once it had started)
  await t.throwsAsync(cli('export', '/shop/db/data', '/dev/null'), { message: /^\/dev\/null is not a file or block device: export writes an image file$/ })
  // a kernel file system takes none either (bb35: --force over /proc/version failed, then said it was "overwritten in part")
  await t.throwsAsync(cli('export', '/shop/db/data', '/proc/version', '--force'), { message: /^\/proc\/version is on the kernel's proc file system, which cannot hold an image: export to a file on a disk$/ })
  await t.throwsAsync(cli('create', '/shop/db/x', '--size', '8M', '--snapshots', '--now'), { message: /^vgrid vol create: --snapshots, --now are not among its flags/ })
  t.regex(await cli('ls'), /\/shop\/db\/data\s+16M/, 'nothing was removed or resized')
  t.regex(await cli('mv', '/shop/db/data', '/shop/db/main'), /-> \/shop\/db\/main/)
  if (haveQemuImg) {
    const src = randomBytes(16 * MiB)
    await writeFile(join(dir, 'in.raw'), src)
    // not a terminal here: plain progress lines, up to 100 %
    const imported = await cli('import', join(dir, 'in.raw'), '/shop/db/main')
    t.regex(imported, /import .*in\.raw -> \/shop\/db\/main: 100%\n/, imported)
    t.regex(stdout, /^imported .*in\.raw into \/shop\/db\/main/m)
    t.notRegex(stdout, /\d+%/, 'the progress is on stderr, the result alone on stdout (bb50)')
    t.regex(imported, /imported .* into \/shop\/db\/main/)
    // into a volume not made yet: said how to make it (bb17: only "no volume with id or path")
    await t.throwsAsync(cli('import', join(dir, 'in.raw'), '/shop/db/new'), { message: /no volume with id or path "\/shop\/db\/new".*: an import writes into a volume that exists; make it first \(vgrid vol create \/shop\/db\/new --size SIZE/ })
    // a session writing over NBD: destroying the volume is refused while it is open
    const writer = await NbdClient.open(join(dir, 'nbd.sock'), 'shop/db/main')
    await writer.write(0, Buffer.from(src.subarray(0, 4096)))
    await t.throwsAsync(cli('rm', '/shop/db/main'), { message: /being written over NBD \(1 session on (node )?\S+\)/ })
    // nor imported into: that would be a second writer
    await t.throwsAsync(cli('import', join(dir, 'in.raw'), '/shop/db/main'), { message: /is being written over NBD \(1 session on (node )?\S+\): an import would be a second writer; disconnect it first/ })
    // an export while it is written copies a snapshot taken then: what was written before
    // it, none of what is written once it is taken (while qemu-img reads), and the snapshot goes
    const before = Buffer.alloc(4096, 0x5a)
    await writer.write(0, before)
    let after: Promise<void> | undefined
    onOut = s => { if (after == null && s.includes('exporting snapshot')) after = writer.write(0, Buffer.alloc(4096, 0xa5)) }
    const live = await cli('export', '/shop/db/main', join(dir, 'live.raw'))
    onOut = undefined
    await after
    t.regex(live, /\/shop\/db\/main is in use \(NBD writers: 1 session on (node )?\S+\): exporting snapshot \/shop\/db\/main@export-\d{8}T\d{6}-\w+, taken now and removed afterwards/, live)
    t.regex(live, /exported \/shop\/db\/main@export-\S+ to .*live\.raw \(the snapshot is removed\)/)
    const exported = await readFile(join(dir, 'live.raw'))
    t.true(exported.subarray(0, 4096).equals(before), 'the export holds the write made before it, not the one made after its snapshot')
    t.true(exported.subarray(4096).equals(src.subarray(4096)))
    t.deepEqual((await cli('info', '/shop/db/main', '--json')).match(/export-/g), null, 'the snapshot is gone')
    // a signal to the CLI stops its qemu-img with it (not left writing, orphaned), removes
    // the export's snapshot and the partial file, and says so
    const signalled: NodeJS.Signals[] = ['SIGTERM', 'SIGINT']
    for (const sig of signalled) {
      let sent = false
      onOut = s => { if (!sent && /export \S+ -> .*: \d+%/.test(s)) { sent = true; process.emit(sig, sig) } }
      await t.throwsAsync(cli('export', '/shop/db/main', join(dir, 'cut.raw')), { message: new RegExp(`^interrupted \\(${sig}\\): the copy stopped: (the partial .*cut\\.raw was removed|nothing was written to .*cut\\.raw)$`) })
      onOut = undefined
      t.false(existsSync(join(dir, 'cut.raw')), 'no partial image is left to pass for one')
      t.deepEqual((await cli('info', '/shop/db/main', '--json')).match(/export-/g), null, `${sig}: the export's snapshot is removed`)
    }
    // an export refused its file takes no snapshot first (rv48: the one taken stayed until its lease ran out)
    await writeFile(join(dir, 'others.raw'), 'x')
    await run('chown', ['65534', join(dir, 'others.raw')])
    await t.throwsAsync(cli('export', '/shop/db/main', join(dir, 'others.raw'), '--force'), { message: /others\.raw is uid 65534's: an export writes over a file of root's with one name only/ })
    t.deepEqual((await cli('info', '/shop/db/main', '--json')).match(/export-/g), null, 'no export snapshot left by a refused export')
    await writer.write(0, src.subarray(0, 4096))
    await writer.close()
    // a client connected but not yet writing is no user the export sees: it still copies a
    // snapshot taken at its start, quietly (bb50, high: it copied the live volume, and a
    // write during the copy made the file a mix of before and after)
    const idle = await NbdClient.open(join(dir, 'nbd.sock'), 'shop/db/main')
    t.regex(await cli('info', '/shop/db/main'), /^used by\s+nothing$/m)
    const end = 16 * MiB - 4096
    let late: Promise<void> | undefined
    onOut = s => { if (late == null && /export \/shop\/db\/main -> .*quiet\.raw: \d+%/.test(s)) late = idle.write(end, Buffer.alloc(4096, 0x3c)).then(async () => { await idle.flush() }) }
    const quiet = await cli('export', '/shop/db/main', join(dir, 'quiet.raw'))
    onOut = undefined
    await late
    t.notRegex(quiet, /in use|exporting snapshot|the snapshot is removed/, 'said nothing of the snapshot: the volume was not in use')
    t.regex(quiet, /exported \/shop\/db\/main to .*quiet\.raw$/m)
    t.true((await readFile(join(dir, 'quiet.raw'))).subarray(end).equals(src.subarray(end)), 'the volume as it was when the export began, not the write made during it')
    // the volume has that write; put back as it was
    await idle.write(end, Buffer.from(src.subarray(end)))
    await idle.close()
    t.deepEqual((await cli('info', '/shop/db/main', '--json')).match(/export-/g), null, 'its snapshot is gone')
    t.regex(await cli('export', '/shop/db/main', join(dir, 'out.qcow2')), /export \/shop\/db\/main -> .*out\.qcow2: 100%/)
    t.is(JSON.parse((await run('qemu-img', ['info', '--output=json', join(dir, 'out.qcow2')])).stdout).format, 'qcow2')
    // a volume is a whole disk: its export is root's alone (bb48: 0644)
    t.is(statSync(join(dir, 'out.qcow2')).mode & 0o777, 0o600)
    // never written through a link, dangling or not (bb48: a user's link in /tmp)
    await symlink(join(dir, 'elsewhere.raw'), join(dir, 'link.raw'))
    for (const force of [[], ['--force']]) await t.throwsAsync(cli('export', '/shop/db/main', join(dir, 'link.raw'), ...force), { message: /link\.raw is a symbolic link \(to \S*elsewhere\.raw\): export writes no file through a link/ })
    t.false(existsSync(join(dir, 'elsewhere.raw')))
    await run('qemu-img', ['convert', '-O', 'raw', join(dir, 'out.qcow2'), join(dir, 'out.raw')])
    t.true(Buffer.from(await readFile(join(dir, 'out.raw'))).equals(src), 'import then export is byte-exact')
  } else t.log('import/export skipped: qemu-img (qemu-utils) not installed')
  t.regex(await cli('snapshot', '/shop/db/main', 'before'), /\/shop\/db\/main@before\n  nbd: .*@before\?socket=.*read-only/)
  t.regex(await cli('clone', '/shop/db/main@before', '/shop/db/copy'), /\/shop\/db\/copy: clone of \/shop\/db\/main@before, 16M/)
  if (haveQemuImg) {
    // a snapshot exports (its own NBD name), never imports; a file bigger than the volume says both sizes
    t.regex(await cli('export', '/shop/db/main@before', join(dir, 'snap.raw')), /exported \/shop\/db\/main@before to .*snap\.raw/)
    t.true(Buffer.from(await readFile(join(dir, 'snap.raw'))).equals(await readFile(join(dir, 'out.raw'))), 'the snapshot holds what the volume held')
    // an existing file is not overwritten unasked
    await t.throwsAsync(cli('export', '/shop/db/main@before', join(dir, 'snap.raw')), { message: /snap\.raw exists: give --force to overwrite it/ })
    t.regex(await cli('export', '/shop/db/main@before', join(dir, 'snap.raw'), '--force'), /exported \/shop\/db\/main@before to .*snap\.raw/)
    await t.throwsAsync(cli('import', join(dir, 'in.raw'), '/shop/db/main@before'), { message: /is a snapshot: read-only/ })
    await t.throwsAsync(cli('export', '/shop/db/main@nope', join(dir, 'x.raw')), { message: /has no snapshot "nope" \(it has before\)/ })
    await writeFile(join(dir, 'big.raw'), Buffer.alloc(17 * MiB))
    await t.throwsAsync(cli('import', join(dir, 'big.raw'), '/shop/db/main'), { message: /big\.raw is 17825792 bytes, more than \/shop\/db\/main's 16777216: grow the volume first/ })
    await run('qemu-img', ['create', '-f', 'qcow2', join(dir, 'big.qcow2'), '17M'])
    await t.throwsAsync(cli('import', join(dir, 'big.qcow2'), '/shop/db/main'), { message: /big\.qcow2 is 17825792 bytes \(its virtual size\), more than \/shop\/db\/main's 16777216/ })
    // a qcow2 over a backing file is refused: qemu-img would copy that file in with the importer's rights (bb48: /etc/shadow)
    await writeFile(join(dir, 'secret.raw'), Buffer.alloc(MiB, 0x5a))
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', join(dir, 'secret.raw'), '-u', join(dir, 'over.qcow2'), '1M'])
    await t.throwsAsync(cli('import', join(dir, 'over.qcow2'), '/shop/db/copy'), { message: /over\.qcow2 reads a backing file, \S*secret\.raw: vgrid imports self-contained images only .*; nothing was written to \/shop\/db\/copy$/ })
    // one another user may write is refused: its header could change between its check and its copy (rv47)
    await run('cp', [join(dir, 'out.qcow2'), join(dir, 'theirs.qcow2')])
    await run('chown', ['65534', join(dir, 'theirs.qcow2')])
    await t.throwsAsync(cli('import', join(dir, 'theirs.qcow2'), '/shop/db/copy'), { message: /theirs\.qcow2 may be changed by its owner, uid 65534, while it is read: .*copy it first/ })
    // an export never writes over another user's file, even with --force (rv47)
    await t.throwsAsync(cli('export', '/shop/db/main', join(dir, 'theirs.qcow2'), '--force'), { message: /theirs\.qcow2 is uid 65534's: an export writes over a file of root's with one name only/ })
    // a self-contained qcow2 imports, byte for byte (opened with no backing file, whatever its header says)
    t.regex(await cli('import', join(dir, 'out.qcow2'), '/shop/db/copy'), /out\.qcow2/)
    await cli('export', '/shop/db/copy', join(dir, 'copy.raw'))
    t.true(Buffer.from(await readFile(join(dir, 'copy.raw'))).equals(await readFile(join(dir, 'out.raw'))), 'a qcow2 imports as it reads')
    // a raw block device imports at its size (its stat says 0 bytes: the import zeroed all it wrote, reading the code; rv47)
    const dev = await run('losetup', ['--find', '--show', join(dir, 'in.raw')]).then(r => r.stdout.trim(), () => '')
    if (dev !== '') {
      t.teardown(async () => { await run('losetup', ['-d', dev]).catch(() => {}) })
      await cli('import', dev, '/shop/db/copy')
      await cli('export', '/shop/db/copy', join(dir, 'fromdev.raw'))
      t.true(Buffer.from(await readFile(join(dir, 'fromdev.raw'))).equals(await readFile(join(dir, 'in.raw'))), 'a block device imports as it reads')
      await run('losetup', ['-d', dev])
    } else t.log('no loop device here: a block device\'s import not tried')
    // a qcow2 on a block device (root's, of group disk) imports (rv48: QEMU's file driver refuses a device)
    const qdev = await run('losetup', ['--find', '--show', join(dir, 'out.qcow2')]).then(r => r.stdout.trim(), () => '')
    if (qdev !== '') {
      t.teardown(async () => { await run('losetup', ['-d', qdev]).catch(() => {}) })
      t.regex(await cli('import', qdev, '/shop/db/copy', '--format', 'qcow2'), /imported/)
      await cli('export', '/shop/db/copy', join(dir, 'fromqdev.raw'))
      t.true(Buffer.from(await readFile(join(dir, 'fromqdev.raw'))).equals(await readFile(join(dir, 'out.raw'))), 'a qcow2 on a block device imports as it reads')
      await run('losetup', ['-d', qdev])
    }
    // a raw file named .qcow2 is refused before anything is written (qemu-img's "not in
    // qcow2 format" came with "may hold part of"); a name saying a format vgrid does not
    // write is refused, not written raw under it (a tester's x.vmdk)
    await writeFile(join(dir, 'r.qcow2'), Buffer.alloc(MiB, 0x33))
    const notQcow2 = await t.throwsAsync(cli('import', join(dir, 'r.qcow2'), '/shop/db/main'), { message: /r\.qcow2 is not a qcow2 image \(it does not start as one\): its name says qcow2; --format raw imports it as raw; nothing was written to \/shop\/db\/main$/ })
    t.is((notQcow2 as CliError).exitCode, 2)
    // one that starts as a qcow2 but is not one qemu-img reads: refused before anything is written too
    await writeFile(join(dir, 'bad.qcow2'), Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 99]), Buffer.alloc(4096, 0x33)]))
    await t.throwsAsync(cli('import', join(dir, 'bad.qcow2'), '/shop/db/main'), { message: /bad\.qcow2 cannot be read as qcow2: qemu-img info failed .*; nothing was written to \/shop\/db\/main$/ })
    const vmdk = await t.throwsAsync(cli('export', '/shop/db/main', join(dir, 'x.vmdk')), { message: /x\.vmdk: its name says vmdk, which vgrid does not write \(it writes raw and qcow2\): give --format raw or --format qcow2/ })
    t.is((vmdk as CliError).exitCode, 2)
    t.false(existsSync(join(dir, 'x.vmdk')), 'no file written')
    await cli('export', '/shop/db/main', join(dir, 'after.raw'))
    t.true(Buffer.from(await readFile(join(dir, 'after.raw'))).equals(await readFile(join(dir, 'out.raw'))), 'the volume is as it was')
    // a smaller image over a volume that held data: the volume holds the image and zeros, not the old tail
    await cli('create', '/shop/db/tail', '--size', '4M')
    await writeFile(join(dir, 'old.raw'), Buffer.alloc(4 * MiB, 0x6b))
    await cli('import', join(dir, 'old.raw'), '/shop/db/tail')
    const small = randomBytes(MiB)
    await writeFile(join(dir, 'small.raw'), small)
    t.regex(await cli('import', join(dir, 'small.raw'), '/shop/db/tail'), /imported .*small\.raw into \/shop\/db\/tail \(the 3145728 bytes past the image's end, to 4194304, zeroed\)/)
    await cli('export', '/shop/db/tail', join(dir, 'tail.raw'))
    const tail = await readFile(join(dir, 'tail.raw'))
    t.true(tail.subarray(0, MiB).equals(small), 'the image')
    t.true(tail.subarray(MiB).equals(Buffer.alloc(3 * MiB)), 'and zeros past it')
    t.regex(await cli('rm', '/shop/db/tail'), /removed/)
    // a volume more than 2 GiB over its image: zeroed in pieces (bb38: qemu-io refuses one write over 2 GiB - 512, and every such import failed)
    await cli('create', '/shop/db/big', '--size', '3G')
    t.regex(await cli('import', join(dir, 'small.raw'), '/shop/db/big'), /imported .*small\.raw into \/shop\/db\/big \(the 3220176896 bytes past the image's end, to 3221225472, zeroed\)/)
    // --json on success too (bb38: text), progress to stderr
    t.like(JSON.parse(await cli('export', '/shop/db/main', join(dir, 'main.raw'), '--json')), { exported: join(dir, 'main.raw'), volume: '/shop/db/main', snapshot: null, format: 'raw' })
    await rm(join(dir, 'main.raw'))
    t.like(JSON.parse(await cli('import', join(dir, 'small.raw'), '/shop/db/big', '--json')), { imported: join(dir, 'small.raw'), volume: '/shop/db/big', zeroed: { from: MiB, to: 3 * 2 ** 30 } })
    t.like(JSON.parse(await cli('rm', '/shop/db/big', '--json')), { path: '/shop/db/big' })
  }
  t.like(JSON.parse(await cli('resize', '/shop/db/main', '32M', '--json')), { path: '/shop/db/main', sizeBytes: 32 * MiB })
  t.like(JSON.parse(await cli('mv', '/shop/db/main', '/shop/db/main2', '--json')), { path: '/shop/db/main2' })
  t.like(JSON.parse(await cli('mv', '/shop/db/main2', '/shop/db/main', '--json')), { path: '/shop/db/main' })
  t.like(JSON.parse(await cli('snapshot', '--set', 'js', '/shop/db/main', '--json')), { snapshot: 'js' })
  t.like(JSON.parse(await cli('snapshot', 'rm', '/shop/db/main', 'js', '--json')), { path: '/shop/db/main' })
  t.regex(await cli('snapshot', '--set', 'both', '/shop/db/main', '/shop/db/copy'), /snapshot both of/)
  // a snapshot given where a volume is expected: read-only, and what to do instead (was a bare not_found)
  await t.throwsAsync(cli('resize', '/shop/db/main@both', '64M'), { message: /"\/shop\/db\/main@both" is snapshot both of volume \/shop\/db\/main, and a snapshot is read-only: it cannot be resized \(vgrid vol clone \/shop\/db\/main@both NEWPATH makes a writable volume of it; vgrid vol snapshot rm \/shop\/db\/main both removes it\)/ })
  await t.throwsAsync(cli('rm', '/shop/db/main@both'), { message: /read-only: it cannot be removed as a volume .*vgrid vol snapshot rm \/shop\/db\/main both removes it/ })
  await t.throwsAsync(cli('snapshot', '/shop/db/main@both', 's2'), { message: /read-only: it cannot be snapshotted/ })
  await t.throwsAsync(cli('resize', '/shop/db/main@nope', '64M'), { message: /volume \/shop\/db\/main has no snapshot "nope" \(it has (\S+, )?both\)/ })
  t.regex(await cli('snapshot', 'rm', '/shop/db/main', 'both'), /removed snapshot/)
  await t.throwsAsync(cli('clone', '/shop/db/main@nope', '/x'), { message: /has no snapshot "nope"/ })
  await t.throwsAsync(cli('rm', '/shop/db/copy'), { message: /"\/shop\/db\/copy" has 1 snapshot \(both\), which would go with it/ })
  t.regex(await cli('rm', '/shop/db/copy', '--snapshots'), /^removed \/shop\/db\/copy and its snapshot both$/m)
  const repaired = await cli('repair', '/shop/db/main')
  t.regex(repaired, /\/shop\/db\/main: nothing to copy, every object has its copies/)
  t.notRegex(repaired, /0\/0 copies/, 'no empty progress line')
  const scrubbed = await cli('repair', '/shop/db/main', '--scrub')
  t.regex(scrubbed, /scrub: every copy verified sound/)
  const info = await cli('info', '/shop/db/main')
  t.regex(info, /state\s+healthy\n/)
  t.regex(info, /^copies\s+\S+ \d+ \(objects of 4M, at the last inventory\)$/m, 'where its copies are (a tester could not tell which nodes held an R=1 volume)')
  t.regex(info, /repair\s+\S+ on \S+: 0 copied \(0 B\)/)
  t.regex(info, /scrub\s+\S+: every copy checked by vol repair --scrub on \S+/, 'the repair\'s scrub, not "none checked yet"')
  // this node's scrub: on its schedule, and now when asked, with plain progress lines
  t.regex(await cli('scrub'), /every 24 h; next \d{4}-/)
  const now = await cli('scrub', '--now')
  t.notRegex(stdout, /\d+%/, 'the scrub\'s progress on stderr (bb50)')
  t.regex(now, haveQemuImg ? /scrub: \d+ objects checked, 0 bad, 0 rewritten/ : /scrub: 0 objects checked/, now)
  t.regex(await cli('scrub'), /last: \S+: \d+ objects checked, 0 bad/)
  if (haveQemuImg) t.regex(await cli('info', '/shop/db/main'), /scrub\s+\S+: [1-9]\d* objects here checked by this node's scheduled scrub, 0 bad/)
  await new Promise(resolve => setTimeout(resolve, WRITER_IDLE_MS + 100)) // the writer is gone (its session went quiet)
  t.regex(await cli('rm', '/shop/db/main', '--snapshots'), /removed \/shop\/db\/main/)
  t.regex(await cli('ls'), /no volumes/)
})
