// The guest builder: a small bootable appliance from the Debian packages installed on
// this machine. The kernel of linux-image-amd64 (as an uncompressed ELF vmlinux for
// PVH boot), and an initramfs with busybox-static, the virtio modules the kernel keeps
// as modules (plus the power button and evdev, so ACPI shutdown works), and an init
// that configures the network from the kernel command line and runs busybox httpd.
// Cached in the data dir by the hash of everything that goes in.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { syncDirSync } from '../../durable-file.ts'
import { which } from '../../netns/netns.ts'
import { cpioNewc, type CpioEntry } from './cpio.ts'
import { INIT_SCRIPT, POWER_BUTTON_SCRIPT, READY_MARK } from './init.ts'
import { loadOrder, moduleName, parseBuiltin, parseModulesDep } from './modules.ts'
import { extractVmlinux } from './vmlinux.ts'

const BUILDER_VERSION = 2
export const GUEST_MODULES = ['virtio_pci', 'virtio_net', 'virtio_blk', 'virtio_console', 'button', 'evdev']

export interface GuestImageOptions {
  /** Kernel version (a /lib/modules entry); the newest with a /boot/vmlinuz-* by default. */
  kernelVersion?: string
  bootDir?: string
  modulesRoot?: string
  busybox?: string
  /** Rebuild even when a cached image exists. */
  force?: boolean
}

export interface GuestImage {
  dir: string
  kernel: string
  initrd: string
  /** Kernel arguments every boot needs; add vgrid.ip=... etc. */
  cmdline: string
  kernelVersion: string
  hash: string
  cached: boolean
  modules: string[]
  readyMark: string
  /** What the kernel image was compressed with. */
  compression: string
}

export class ImageError extends Error { override name = 'ImageError' }

/** Whether a 64-bit ELF asks for a program interpreter (is dynamically linked) (pure). */
export function elfInterpreter (b: Buffer): boolean {
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2) return false
  const phoff = Number(b.readBigUInt64LE(0x20))
  const size = b.readUInt16LE(0x36)
  const count = b.readUInt16LE(0x38)
  for (let i = 0; i < count; i++) {
    const at = phoff + i * size
    if (at + 4 <= b.length && b.readUInt32LE(at) === 3) return true // PT_INTERP
  }
  return false
}

function newestKernel (bootDir: string, modulesRoot: string): string {
  const versions = readdirSync(bootDir).filter(f => f.startsWith('vmlinuz-')).map(f => f.slice(8)).filter(v => existsSync(join(modulesRoot, v, 'modules.dep')))
  versions.sort((a, b) => a.localeCompare(b, undefined, { numeric: true }))
  const v = versions.at(-1)
  if (v === undefined) throw new ImageError(`no kernel with modules: no ${bootDir}/vmlinuz-VERSION with ${modulesRoot}/VERSION/modules.dep (apt-get install linux-image-amd64)`)
  return v
}

/** A module file's bytes, decompressed when the distribution ships it compressed. */
function moduleBytes (file: string): Buffer {
  const raw = readFileSync(file)
  const tool = file.endsWith('.xz') ? ['xz', '-dc'] : file.endsWith('.zst') ? ['zstd', '-dc'] : file.endsWith('.gz') ? ['gzip', '-dc'] : undefined
  if (tool === undefined) return raw
  const bin = which(tool[0]!)
  if (bin === undefined) throw new ImageError(`${file} is compressed and \`${tool[0]}\` is missing`)
  const r = spawnSync(bin, tool.slice(1), { input: raw, maxBuffer: 256 * 1024 * 1024 })
  if (r.status !== 0) throw new ImageError(`decompressing ${file}: ${r.stderr?.toString().trim()}`)
  return r.stdout
}

function busyboxApplets (busybox: string): string[] {
  const r = spawnSync(busybox, ['--list-full'], { encoding: 'utf8' })
  if (r.status !== 0) throw new ImageError(`${busybox} --list-full failed: ${r.stderr}`)
  return r.stdout.split('\n').filter(l => /^[a-z/]+\/[^/]+$/.test(l))
}

export function buildGuestImage (dataDir: string, opts: GuestImageOptions = {}): GuestImage {
  const bootDir = opts.bootDir ?? '/boot'
  const modulesRoot = opts.modulesRoot ?? '/lib/modules'
  const busybox = opts.busybox ?? '/bin/busybox'
  if (!existsSync(busybox)) throw new ImageError(`${busybox} not found (apt-get install busybox-static)`)
  if (elfInterpreter(readFileSync(busybox))) throw new ImageError(`${busybox} is dynamically linked; the guest has no libc: install busybox-static`)
  const version = opts.kernelVersion ?? newestKernel(bootDir, modulesRoot)
  const vmlinuz = join(bootDir, `vmlinuz-${version}`)
  const modDir = join(modulesRoot, version)
  if (!existsSync(vmlinuz)) throw new ImageError(`${vmlinuz} not found`)
  let deps: Map<string, string[]>
  try { deps = parseModulesDep(readFileSync(join(modDir, 'modules.dep'), 'utf8')) } catch (err) { throw new ImageError(`reading ${modDir}/modules.dep: ${(err as Error).message}`) }
  let builtin = new Set<string>()
  try { builtin = parseBuiltin(readFileSync(join(modDir, 'modules.builtin'), 'utf8')) } catch {}
  const { order } = loadOrder(deps, GUEST_MODULES, builtin)

  const kernelBytes = readFileSync(vmlinuz)
  const bbBytes = readFileSync(busybox)
  const modFiles = order.map(p => ({ name: moduleName(p), bytes: moduleBytes(join(modDir, p)) }))
  const h = createHash('sha256').update(`vgrid-guest-${BUILDER_VERSION}\0${version}\0`).update(kernelBytes).update(bbBytes).update(INIT_SCRIPT).update(POWER_BUTTON_SCRIPT)
  for (const m of modFiles) h.update(m.name).update(m.bytes)
  const hash = h.digest('hex').slice(0, 16)
  const dir = join(dataDir, 'images', `guest-${hash}`)
  const image = (cached: boolean, compression: string): GuestImage => ({
    dir, kernel: join(dir, 'vmlinux'), initrd: join(dir, 'initrd.img'), cmdline: 'console=ttyS0 quiet panic=-1', kernelVersion: version, hash, cached, modules: modFiles.map(m => m.name), readyMark: READY_MARK, compression
  })
  if (opts.force !== true && existsSync(join(dir, 'manifest.json'))) {
    try { return image(true, (JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { compression: string }).compression) } catch {}
  }

  const { vmlinux, format } = extractVmlinux(kernelBytes)
  const entries: CpioEntry[] = []
  const dirs = new Set(['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'proc', 'sys', 'dev', 'etc', 'etc/vgrid', 'etc/acpi', 'lib', 'lib/modules', 'tmp', 'run', 'www'])
  for (const d of dirs) entries.push({ kind: 'dir', path: d })
  entries.push({ kind: 'chardev', path: 'dev/console', major: 5, minor: 1 })
  entries.push({ kind: 'chardev', path: 'dev/null', major: 1, minor: 3, mode: 0o666 })
  entries.push({ kind: 'file', path: 'bin/busybox', data: bbBytes, mode: 0o755 })
  for (const a of busyboxApplets(busybox)) {
    const rel = a.replace(/^\/+/, '')
    if (rel === 'bin/busybox' || !dirs.has(rel.split('/').slice(0, -1).join('/'))) continue
    entries.push({ kind: 'symlink', path: rel, target: '/bin/busybox' })
  }
  entries.push({ kind: 'file', path: 'init', data: Buffer.from(INIT_SCRIPT), mode: 0o755 })
  entries.push({ kind: 'file', path: 'etc/acpi/power-button', data: Buffer.from(POWER_BUTTON_SCRIPT), mode: 0o755 })
  entries.push({ kind: 'file', path: 'etc/vgrid/modules', data: Buffer.from(modFiles.map(m => m.name).join('\n') + '\n') })
  for (const m of modFiles) entries.push({ kind: 'file', path: `lib/modules/${m.name}.ko`, data: m.bytes })
  const initrd = gzipSync(cpioNewc(entries), { level: 6 })

  // built aside and renamed into place, so a crash never leaves a half image in the cache:
  // each file and the tmp dir are fsynced before the rename (else a power cut soon after
  // can leave the manifest over an empty vmlinux: VMs fail to boot until --force), and
  // the parent after it
  const tmp = `${dir}.tmp-${process.pid}`
  rmSync(tmp, { recursive: true, force: true })
  mkdirSync(tmp, { recursive: true })
  writeFileSync(join(tmp, 'vmlinux'), vmlinux, { flush: true })
  writeFileSync(join(tmp, 'initrd.img'), initrd, { flush: true })
  const img = image(false, format)
  writeFileSync(join(tmp, 'manifest.json'), JSON.stringify({ hash, kernelVersion: version, compression: format, modules: img.modules, builtAt: new Date().toISOString(), builder: BUILDER_VERSION }, null, 1), { flush: true })
  syncDirSync(tmp)
  rmSync(dir, { recursive: true, force: true })
  renameSync(tmp, dir)
  syncDirSync(dirname(dir))
  return img
}
