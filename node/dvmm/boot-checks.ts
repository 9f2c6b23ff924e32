// What a qemu VM's boot fields promise that can be checked when it is created, so the
// request is refused naming the field rather than the VM shown `running` while its
// guest never boots (a tester: the appliance's kernel in 64M stayed silent for ever).
import { closeSync, openSync, readSync, statSync } from 'node:fs'
import { isIPv4 } from 'node:net'

const MiB = 2 ** 20
/** room a kernel needs past its image and initrd to come up (the appliance: panics at 80M, boots at 84M; it loads to 74 MiB, its initrd 1.2 MiB) */
export const KERNEL_RUN_ROOM = 8 * MiB
const PT_LOAD = 1
const ET_EXEC = 2
/** where x86-64 Linux maps its kernel image (virtual) */
const KERNEL_HALF = 0xffffffff80000000n

/**
 * Where a Linux ELF kernel (a vmlinux, booted through its PVH entry) ends in guest
 * memory: the highest physical end of its loaded segments, which QEMU places exactly
 * there. Only an executable mapped in the kernel's upper half counts as one (an
 * ordinary program given as a kernel is not judged); null for anything else (a bzImage
 * relocates itself; a file that cannot be read is the start's to report). Pure over
 * the file's first bytes.
 */
export function elfLoadEnd (head: Buffer): number | null {
  if (head.length < 64 || head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1 || head.readUInt16LE(0x10) !== ET_EXEC) return null
  const phoff = Number(head.readBigUInt64LE(0x20))
  const size = head.readUInt16LE(0x36)
  const count = head.readUInt16LE(0x38)
  if (size < 56 || count === 0 || phoff + size * count > head.length) return null
  let end = 0
  let kernel = false
  for (let i = 0; i < count; i++) {
    const at = phoff + i * size
    if (head.readUInt32LE(at) !== PT_LOAD) continue
    if (head.readBigUInt64LE(at + 16) >= KERNEL_HALF) kernel = true
    end = Math.max(end, Number(head.readBigUInt64LE(at + 24) + head.readBigUInt64LE(at + 40)))
  }
  return end > 0 && kernel ? end : null
}

function readHead (path: string, bytes: number): Buffer | null {
  let fd: number | undefined
  try {
    fd = openSync(path, 'r')
    const buf = Buffer.alloc(bytes)
    return buf.subarray(0, readSync(fd, buf, 0, bytes, 0))
  } catch { return null } finally { if (fd != null) closeSync(fd) }
}

const sizeOf = (path: string | undefined): number => { try { return path == null ? 0 : statSync(path).size } catch { return 0 } }
const mib = (b: number): string => `${(b / MiB).toFixed(1)} MiB`

/** why `memoryBytes` cannot boot this ELF kernel and initrd, or null (not an ELF kernel, or it fits) */
export function kernelMemoryProblem (kernel: string, initrd: string | undefined, memoryBytes: number, given: string): string | null {
  const head = readHead(kernel, 64 * 1024)
  const end = head == null ? null : elfLoadEnd(head)
  if (end == null) return null
  const initrdBytes = sizeOf(initrd)
  const least = Math.ceil((end + initrdBytes + KERNEL_RUN_ROOM) / MiB)
  if (memoryBytes >= least * MiB) return null
  return `${given} cannot boot this kernel: it loads up to ${mib(end)} of guest memory${initrdBytes > 0 ? `, its initrd takes ${mib(initrdBytes)} more` : ''}, and it needs room to run; give at least ${least}M, more for what the guest runs`
}

/** the longest command line an x86 kernel takes (COMMAND_LINE_SIZE, 2048 with its NUL) */
export const KERNEL_CMDLINE_MAX = 2047
/** what vgrid's own arguments may take of it, its terminal names (vgrid.hosts) aside */
export const VGRID_CMDLINE_ROOM = 256

/** the guest init's arguments vgrid itself adds to a qemu VM's command line (drivers/qemu.ts) */
const VGRID_SETS = ['vgrid.name', 'vgrid.disks', 'vgrid.overlay', 'vgrid.hosts']

/**
 * A cmdline's vgrid.ip and vgrid.gw, where given, are addresses: vgrid sets them from
 * the VM's interface when they are absent, and a user's own wins, so a copied
 * placeholder (`vgrid.ip=ADDR/PREFIX`) would leave the guest without a network. The
 * arguments vgrid always adds are not given (the init would read both: a tester's
 * `vgrid.disks=1` made the guest's disk wait fail on "1\n1"), nor any vgrid one twice.
 */
export function cmdlineProblem (cmdline: string): string | null {
  // a longer one is cut (or the guest does not boot at all: bb54's sat `running` with no output)
  const bytes = Buffer.byteLength(cmdline)
  if (bytes > KERNEL_CMDLINE_MAX - VGRID_CMDLINE_ROOM) return `is ${bytes} bytes: an x86 kernel takes a command line of at most ${KERNEL_CMDLINE_MAX}, and vgrid adds up to ${VGRID_CMDLINE_ROOM} of its own (console=ttyS0, vgrid.name, vgrid.ip, vgrid.gw, vgrid.disks, vgrid.overlay): give at most ${KERNEL_CMDLINE_MAX - VGRID_CMDLINE_ROOM}`
  const seen = new Set<string>()
  for (const word of cmdline.split(/\s+/)) {
    const eq = word.indexOf('=')
    const key = eq < 0 ? word : word.slice(0, eq)
    const value = word.slice(eq + 1)
    if (VGRID_SETS.includes(key)) return `${key} is set by vgrid (it adds ${VGRID_SETS.join(', ')}: the VM's name, its disk count, its overlay address and terminal names): leave it out`
    if (key.startsWith('vgrid.') && seen.has(key)) return `${key} is given twice`
    seen.add(key)
    if (key === 'vgrid.ip') {
      const [addr, prefix, ...rest] = value.split('/')
      if (!isIPv4(addr ?? '') || prefix == null || !/^(3[0-2]|[12]?\d)$/.test(prefix) || rest.length > 0) return `vgrid.ip=${value} is not an IPv4 address with its prefix (10.0.0.5/24); leave vgrid.ip and vgrid.gw out and vgrid gives the guest its interface's address`
    }
    if (key === 'vgrid.gw' && !isIPv4(value)) return `vgrid.gw=${value} is not an IPv4 address; leave vgrid.ip and vgrid.gw out and vgrid gives the guest its interface's gateway`
  }
  return null
}

/**
 * What a boot disk image is, from its first 512 bytes: qcow2 (its magic), raw (a boot
 * sector's signature: an MBR, or GPT's protective one), or neither, with why. Any file
 * would pass as raw, and a guest with nothing to boot "runs" for ever in the firmware.
 */
export function diskImageFormat (head: Uint8Array, path: string): { format: 'raw' | 'qcow2' } | { problem: string } {
  if (head.length >= 4 && head[0] === 0x51 && head[1] === 0x46 && head[2] === 0x49 && head[3] === 0xfb) return { format: 'qcow2' }
  if (head.length >= 512 && head[510] === 0x55 && head[511] === 0xaa) return { format: 'raw' }
  return { problem: `${path} is not a bootable disk image: neither qcow2 nor a raw disk with a boot sector (MBR or GPT)` }
}

export function imageFormatOf (path: string): { format: 'raw' | 'qcow2' } | { problem: string } {
  const head = headOf(path, 512)
  return typeof head === 'string' ? { problem: head } : diskImageFormat(head, path)
}

/** a file's first `bytes` (fewer if it is shorter), or why they cannot be read */
function headOf (path: string, bytes: number): Uint8Array | string {
  const head = new Uint8Array(bytes)
  let n = 0
  try {
    const fd = openSync(path, 'r')
    try { n = readSync(fd, head, 0, bytes, 0) } finally { closeSync(fd) }
  } catch (err) { return `${path} cannot be read: ${(err as Error).message}` }
  return head.subarray(0, n)
}

/** how an initramfs may begin: a cpio archive (newc, crc, old binary either way round: early microcode goes so, uncompressed) or one of the compressions the kernel unpacks */
const INITRD_MAGICS: ReadonlyArray<readonly [string, readonly number[]]> = [
  ['cpio', [0x30, 0x37, 0x30, 0x37, 0x30, 0x31]], ['cpio', [0x30, 0x37, 0x30, 0x37, 0x30, 0x32]], ['cpio', [0xc7, 0x71]], ['cpio', [0x71, 0xc7]],
  ['gzip', [0x1f, 0x8b]], ['gzip', [0x1f, 0x9e]], ['bzip2', [0x42, 0x5a, 0x68]], ['lzma', [0x5d, 0x00, 0x00]], ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['lzo', [0x89, 0x4c, 0x5a, 0x4f]], ['lz4', [0x02, 0x21, 0x4c, 0x18]], ['zstd', [0x28, 0xb5, 0x2f, 0xfd]]
]

/**
 * Whether a file's first bytes are an initramfs the kernel can unpack (null), or why not:
 * any file was taken, and the guest's kernel found no root and panicked at every start
 * (bb53).
 */
export function initrdProblem (head: Uint8Array, path: string): string | null {
  if (head.length === 0) return `${path} is empty, not an initramfs`
  const found = INITRD_MAGICS.some(([, m]) => head.length >= m.length && m.every((b, i) => head[i] === b))
  return found ? null : `${path} is not an initramfs: neither a cpio archive nor one compressed with ${[...new Set(INITRD_MAGICS.map(([k]) => k).filter(k => k !== 'cpio'))].join(', ')}`
}

/** initrdProblem of the file at `path` */
export function initrdFileProblem (path: string): string | null {
  const head = headOf(path, 8)
  return typeof head === 'string' ? head : initrdProblem(head, path)
}

/**
 * Whether a file's first 8 KiB are a kernel QEMU boots directly (null), or why not: an
 * ELF (a vmlinux, PVH or multiboot), a Linux bzImage (its "HdrS" at 0x202), or a
 * multiboot image (its magic within 8 KiB, 4-aligned). Any file was taken, and failed
 * three starts with QEMU's "invalid kernel header" (bb54).
 */
export function kernelProblem (head: Uint8Array, path: string): string | null {
  if (head.length === 0) return `${path} is empty, not a kernel`
  const at = (off: number, bytes: readonly number[]): boolean => head.length >= off + bytes.length && bytes.every((b, i) => head[off + i] === b)
  if (at(0, [0x7f, 0x45, 0x4c, 0x46]) || at(0x202, [0x48, 0x64, 0x72, 0x53])) return null
  for (let off = 0; off + 4 <= Math.min(head.length, 8192); off += 4) if (at(off, [0x02, 0xb0, 0xad, 0x1b])) return null
  return `${path} is not a kernel QEMU boots: neither an ELF (a vmlinux), a Linux bzImage (a vmlinuz) nor a multiboot image`
}

/** kernelProblem of the file at `path` */
export function kernelFileProblem (path: string): string | null {
  const head = headOf(path, 8192)
  return typeof head === 'string' ? head : kernelProblem(head, path)
}
