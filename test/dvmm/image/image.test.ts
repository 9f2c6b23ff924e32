// The guest builder: its pure parts (cpio, modules.dep, compression magic) against
// the real tools and files, and a real build from this machine's packages: the kernel
// comes out as an ELF vmlinux, the initramfs holds init, busybox and the virtio modules
// in load order, a second build comes from the cache, and bad inputs say what is wrong.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { buildGuestImage, elfInterpreter, ImageError } from '../../../node/dvmm/image/build.ts'
import { cpioNewc } from '../../../node/dvmm/image/cpio.ts'
import { loadOrder, moduleName, parseModulesDep } from '../../../node/dvmm/image/modules.ts'
import { extractVmlinux, findAll, isElf } from '../../../node/dvmm/image/vmlinux.ts'
import { which } from '../../../node/netns/netns.ts'

const tmp = mkdtempSync(join(tmpdir(), 'vgrid-img-'))
test.after.always(() => { rmSync(tmp, { recursive: true, force: true }) })

const kernels = existsSync('/boot') ? spawnSync('sh', ['-c', 'ls /boot/vmlinuz-* 2>/dev/null'], { encoding: 'utf8' }).stdout.trim() : ''
const skipBuild = kernels === '' ? 'no /boot/vmlinuz-* (apt-get install linux-image-amd64)' : !existsSync('/bin/busybox') ? 'no /bin/busybox (apt-get install busybox-static)' : which('cpio') == null ? 'no cpio to check the archive with' : undefined
if (skipBuild !== undefined) console.log(`test/dvmm/image: real build skipped: ${skipBuild}`)
const real = skipBuild === undefined ? test.serial : test.serial.skip

test('cpio newc: the system cpio reads back files, dirs, symlinks and device nodes', t => {
  if (which('cpio') == null) { t.pass('no cpio installed; skipped'); return }
  const archive = cpioNewc([
    { kind: 'dir', path: 'etc' },
    { kind: 'file', path: 'etc/hello', data: Buffer.from('hi there\n'), mode: 0o640 },
    { kind: 'file', path: 'odd', data: Buffer.from('12345') },
    { kind: 'symlink', path: 'link', target: '/etc/hello' },
    { kind: 'chardev', path: 'console', major: 5, minor: 1 }
  ])
  const list = spawnSync('cpio', ['-itv', '--quiet'], { input: archive, encoding: 'utf8' })
  t.is(list.status, 0, list.stderr)
  const lines = list.stdout.trim().split('\n')
  t.is(lines.length, 5)
  t.regex(lines[1]!, /^-rw-r-----.* 9 .*etc\/hello$/)
  t.regex(lines[3]!, /^lrwxrwxrwx.*link -> \/etc\/hello$/)
  t.regex(lines[4]!, /^crw-------.*5,\s+1.*console$/)
  const dir = join(tmp, 'x')
  mkdirSync(dir)
  const ex = spawnSync('cpio', ['-id', '--quiet', 'etc/hello', 'odd'], { input: archive, cwd: dir })
  t.is(ex.status, 0)
  t.is(readFileSync(join(dir, 'etc/hello'), 'utf8'), 'hi there\n')
  t.is(readFileSync(join(dir, 'odd'), 'utf8'), '12345')
  t.throws(() => cpioNewc([{ kind: 'dir', path: '../up' }]), { message: /bad path/ })
})

test('modules: dependencies load first, each once; unknown modules are named', t => {
  const deps = parseModulesDep([
    'kernel/drivers/virtio/virtio_ring.ko:',
    'kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko',
    'kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko',
    'kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko',
    'kernel/net/core/failover.ko:'
  ].join('\n'))
  const { order } = loadOrder(deps, ['virtio_net', 'virtio'])
  t.deepEqual(order.map(moduleName), ['failover', 'net_failover', 'virtio_ring', 'virtio', 'virtio_net'])
  t.deepEqual(loadOrder(deps, ['virtio_blk'], new Set(['virtio_blk'])), { order: [], builtin: ['virtio_blk'] })
  t.throws(() => loadOrder(deps, ['no_such_mod']), { message: /no_such_mod is neither/ })
  const cyc = parseModulesDep('a.ko: b.ko\nb.ko: a.ko')
  t.throws(() => loadOrder(cyc, ['a']), { message: /cycle/ })
})

test('vmlinux: finds a compressed ELF after a header, says what it tried when there is none', t => {
  const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46]), Buffer.alloc(4096, 7)])
  const gz = spawnSync('gzip', ['-c'], { input: elf }).stdout
  const image = Buffer.concat([Buffer.alloc(1000, 0x11), gz, Buffer.alloc(300, 0x22)])
  t.deepEqual(findAll(image, Buffer.from([0x1f, 0x8b, 0x08])), [1000])
  const out = extractVmlinux(image)
  t.is(out.format, 'gzip')
  t.true(out.vmlinux.equals(elf))
  t.throws(() => extractVmlinux(Buffer.alloc(5000, 0x33)), { message: /no ELF kernel found/ })
})

real('build: a real guest from this machine\'s packages, cached by content', t => {
  const t0 = performance.now()
  const img = buildGuestImage(tmp)
  t.log(`built in ${(performance.now() - t0).toFixed(0)} ms: kernel ${img.kernelVersion} (${img.compression}), modules ${img.modules.join(' ')}`)
  t.false(img.cached)
  t.true(isElf(readFileSync(img.kernel)), 'the kernel is an uncompressed ELF vmlinux')
  for (const m of ['virtio_pci', 'virtio_net', 'virtio_blk']) t.true(img.modules.includes(m), m)
  t.true(img.modules.indexOf('virtio_ring') < img.modules.indexOf('virtio_net'), 'dependencies first')
  const list = spawnSync('cpio', ['-it', '--quiet'], { input: gunzipSync(readFileSync(img.initrd)), encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }).stdout.split('\n')
  for (const f of ['init', 'bin/busybox', 'bin/sh', 'dev/console', 'etc/vgrid/modules', 'lib/modules/virtio_net.ko', 'usr/sbin/httpd']) t.true(list.includes(f), f)
  const again = buildGuestImage(tmp)
  t.true(again.cached)
  t.is(again.hash, img.hash)
  t.is(again.kernel, img.kernel)
})

real('build: bad inputs say what is missing', t => {
  const e1 = t.throws(() => buildGuestImage(tmp, { busybox: '/no/busybox' }), { instanceOf: ImageError })
  t.regex(e1!.message, /busybox-static/)
  const e2 = t.throws(() => buildGuestImage(tmp, { kernelVersion: '0.0.0-none' }), { instanceOf: ImageError })
  t.regex(e2!.message, /vmlinuz-0\.0\.0-none not found/)
  const empty = join(tmp, 'emptyboot')
  mkdirSync(empty)
  writeFileSync(join(empty, 'README'), 'nothing here')
  const e3 = t.throws(() => buildGuestImage(tmp, { bootDir: empty }), { instanceOf: ImageError })
  t.regex(e3!.message, /linux-image-amd64/)
})

test('elfInterpreter: a dynamic program asks for one, busybox-static does not', t => {
  t.true(elfInterpreter(readFileSync(process.execPath)), 'node is dynamically linked')
  if (existsSync('/bin/busybox')) t.false(elfInterpreter(readFileSync('/bin/busybox')))
  t.false(elfInterpreter(Buffer.from('#!/bin/sh\n')))
})

real('vgrid image build: the command module prints the image, --json its fields', async t => {
  const { run } = await import('../../../node/dvmm/image/cli.ts')
  let out = ''
  const write = process.stdout.write.bind(process.stdout)
  process.stdout.write = ((s: string) => { out += s; return true }) as typeof process.stdout.write
  try {
    await run(['build', '--data-dir', tmp, '--json'])
    const j = JSON.parse(out) as { kernel: string, initrd: string, hash: string }
    t.true(existsSync(j.kernel) && existsSync(j.initrd))
    out = ''
    await run(['build', '--data-dir', tmp])
    t.regex(out, new RegExp(`guest image ${j.hash} \\(cached\\)`))
    await t.throwsAsync(run(['frobnicate']), { message: /unknown subcommand "image frobnicate"/ })
  } finally {
    process.stdout.write = write
  }
})
