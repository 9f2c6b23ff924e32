// What a VM runs: a process VM's command (and the user it runs as), a qemu VM's kernel
// (with initrd and command line), image, or first volume. Checked alike where a VM is
// made (vms.ts vmDraft) and where `vm update` changes them (vm-update.ts): a 400 naming
// the field, never a VM that fails at every start.
import { createHash } from 'node:crypto'
import { statSync } from 'node:fs'
import { VM_USER_PATTERN, type VmSpec } from '../../crdt/index.ts'
import { ValidationError } from '../errors.ts'
import { cmdlineProblem, imageFormatOf, initrdFileProblem, kernelFileProblem, kernelMemoryProblem } from './boot-checks.ts'

const invalid = (field: string, msg: string): ValidationError => new ValidationError(field, `${field}: ${msg}`)

/** the files a VM's spec names, checked on the node the request goes through */
export type FileKind = 'kernel' | 'initrd' | 'image' | 'program'
/** what is wrong with the file a field names (null: nothing) */
export type FileCheck = (path: string, kind: FileKind) => string | null

/**
 * A regular file (a directory given there fails only when the VM starts); an image
 * must be one that boots (bb34: /etc/passwd was taken, and the guest sat in its
 * firmware), a kernel one QEMU boots (kernelProblem), an initrd an initramfs
 * (initrdProblem), a process VM's program an
 * executable file (bb34: one that does not exist was taken, then failed at every start).
 */
export function fileProblemHere (p: string, kind: FileKind): string | null {
  let st
  try { st = statSync(p) } catch { st = null }
  if (st == null || !st.isFile()) return kind === 'program' ? `${p} does not exist on this node or is not a file` : `${p} does not exist or is not a file`
  if (kind === 'program' && (st.mode & 0o111) === 0) return `${p} is not executable (mode ${(st.mode & 0o777).toString(8)})`
  if (kind === 'image') {
    const f = imageFormatOf(p)
    if ('problem' in f) return f.problem
  }
  if (kind === 'initrd') return initrdFileProblem(p)
  if (kind === 'kernel') return kernelFileProblem(p)
  return null
}

/** the fields of a spec that say what a VM runs */
export const BOOT_FIELDS = ['command', 'user', 'kernel', 'initrd', 'cmdline', 'image'] as const
export type BootFields = Pick<VmSpec, typeof BOOT_FIELDS[number]>

export interface BootContext {
  driver: 'qemu' | 'process'
  memoryBytes: number
  /** the memory as the request gave it, for messages */
  memoryGiven: string
  /** whether the VM has volumes (a qemu VM with neither kernel nor image boots from the first) */
  hasVolumes: boolean
  constraints: Readonly<Record<string, string>>
  files: FileCheck
  /** whether a path names a volume (given as an image by mistake) */
  isVolume: (path: string) => boolean
}

/**
 * The boot fields of request `b` (fields absent are absent) for a VM of `c.driver`,
 * checked as a whole: one kind of boot, its files there, a command line the guest's
 * init reads right, memory enough for the kernel. A 400 naming the field otherwise.
 */
export function bootFieldsOf (b: Readonly<Record<string, unknown>>, c: BootContext): BootFields {
  const str = (f: string): string | undefined => {
    const v = b[f]
    if (v === undefined) return undefined
    if (typeof v !== 'string' || v === '' || v.length > 4096) throw invalid(f, 'must be a non-empty string of at most 4096 characters')
    if (v.includes('\0')) throw invalid(f, 'holds a NUL byte')
    return v
  }
  /** a file on the node that runs the VM: absolute, as any node resolves it alike (a relative one would be the agent's working directory) */
  const file = (f: string): string | undefined => {
    const v = str(f)
    if (v != null && !v.startsWith('/')) throw invalid(f, `${v} is not an absolute path`)
    return v
  }
  const kernel = file('kernel')
  const initrd = file('initrd')
  const cmdline = str('cmdline')
  const image = file('image')
  const command = commandOf(b.command)
  if (c.driver === 'process' && command == null) throw invalid('command', 'a process VM needs a command')
  if (b.user !== undefined) {
    if (c.driver !== 'process') throw invalid('user', 'only a process VM runs as a user of its node (a qemu guest has its own)')
    if (typeof b.user !== 'string' || !new RegExp(VM_USER_PATTERN).test(b.user)) throw invalid('user', 'must be a user name (lower case, up to 32 characters) or a numeric uid')
    // bb48: `--user root` ran with every capability and vm show said "without capabilities"
    if (b.user === 'root' || /^0+$/.test(b.user)) throw invalid('user', `${b.user} is root: --user runs the command as another user of the node, without capabilities; leave it out to run it as root, with all of them`)
  }
  // what boots it is the driver's: a field of the other kind would be ignored or fail at start
  if (c.driver === 'qemu' && command != null) throw invalid('command', 'a qemu VM boots a kernel or an image; a command is for a process VM')
  if (c.driver === 'process') {
    const other = ([['kernel', kernel], ['initrd', initrd], ['cmdline', cmdline], ['image', image]] as const).find(([, v]) => v != null)
    if (other != null) throw invalid(other[0], `a process VM runs its command; ${other[0]} is for a qemu VM`)
  }
  // with neither, it boots from its first volume
  if (c.driver === 'qemu' && kernel == null && image == null && !c.hasVolumes) throw invalid('kernel', 'a qemu VM needs a kernel (direct boot), an image, or a volume to boot from (with neither kernel nor image, it boots from its first volume)')
  // a VM boots one of them: given both, the kernel was booted and the image ignored (a tester)
  if (c.driver === 'qemu' && kernel != null && image != null) throw new ValidationError('image', 'kernel and image: give kernel (with initrd, cmdline) or image, not both')
  // an image boots through its own boot loader, which reads neither: they would be ignored
  const loose = kernel == null && c.driver === 'qemu' ? ([['initrd', initrd], ['cmdline', cmdline]] as const).find(([, v]) => v != null) : undefined
  if (loose != null) throw invalid(loose[0], `goes with a kernel (direct boot), and none is given: an image or a volume boots through its own boot loader, which reads no ${loose[0]}`)
  for (const [f, p] of [['kernel', kernel], ['initrd', initrd], ['image', image]] as const) {
    const wrong = p == null ? null : c.files(p, f)
    if (wrong == null) continue
    // a volume's path given as the image: say how a volume boots (bb29)
    if (f === 'image' && c.isVolume(p!)) throw invalid(f, `${p!} is a volume, not a file of this node: to boot from it, attach it as the first volume (--volume ${p!}) and give no kernel or image`)
    throw invalid(f, wrong)
  }
  if (c.driver === 'qemu' && cmdline != null) {
    const wrong = cmdlineProblem(cmdline)
    if (wrong != null) throw invalid('cmdline', wrong)
  }
  if (c.driver === 'qemu' && kernel != null) {
    const small = kernelMemoryProblem(kernel, initrd, c.memoryBytes, c.memoryGiven)
    if (small != null) throw invalid('memory', small)
  }
  // an absolute program is looked for on this node (as a kernel is), unless the VM is
  // bound to labelled nodes, which may be the only ones that have it (rv39); a bare
  // name is looked up in the PATH of the node that runs it, which may differ
  const prog = command?.[0]
  const wrong = prog?.startsWith('/') === true && c.driver === 'process' && Object.keys(c.constraints).length === 0 ? c.files(prog, 'program') : null
  if (wrong != null) throw invalid('command[0]', wrong)
  const out: BootFields = {}
  if (command != null) out.command = command
  if (b.user !== undefined) out.user = b.user as string
  if (kernel != null) out.kernel = kernel
  if (initrd != null) out.initrd = initrd
  if (cmdline != null) out.cmdline = cmdline
  if (image != null) out.image = image
  return out
}

/** a request's `command`: the program and its arguments, each a string (an empty argument is one) */
function commandOf (raw: unknown): string[] | undefined {
  if (raw === undefined) return undefined
  if (!Array.isArray(raw) || raw.length === 0 || !raw.every(a => typeof a === 'string')) throw invalid('command', 'must be a non-empty array of strings')
  const args = raw as string[]
  if (args.length > 256) throw invalid('command', `has ${args.length} arguments, more than the 256 a VM's command may have`)
  const long = args.findIndex(a => a.length > 4096)
  if (long >= 0) throw invalid(`command[${long}]`, 'is longer than 4096 characters')
  const nul = args.findIndex(a => a.includes('\0'))
  if (nul >= 0) throw invalid(`command[${nul}]`, 'holds a NUL byte (an argument cannot)')
  // an empty argument is a valid one (printf '%s|%s' '' x); an empty program is not
  if (args[0] === '') throw invalid('command[0]', 'is empty: the program to run must be named')
  // relative to what? the agent's own directory, on whichever node runs it (bb30: taken, then failed three times)
  const prog = args[0]!
  if (prog.includes('/') && !prog.startsWith('/')) throw invalid('command[0]', `"${prog.length > 80 ? `${prog.slice(0, 80)}…` : prog}" is a relative path: give the program's absolute path, or a bare name looked up in PATH`)
  return args
}

/** a qemu VM with neither kernel nor image boots from its first volume (run-steps.ts driverSpec) */
export const bootsFromVolume = (spec: Pick<VmSpec, 'driver' | 'command' | 'kernel' | 'image' | 'volumes'>): boolean =>
  spec.driver === 'qemu' && (spec.command ?? []).length === 0 && spec.kernel == null && spec.image == null && spec.volumes.length > 0

/**
 * What a VM runs or boots, said in one line for `vm show` (pure; bb53: only the JSON had
 * it, so a `vm update` of it could not be checked by eye). `firstDisk`: the path of its
 * first volume, the one it boots from when it has neither kernel nor image.
 */
export function bootLine (spec: Pick<VmSpec, 'driver' | 'volumes' | typeof BOOT_FIELDS[number]>, firstDisk?: string): string {
  if (spec.driver === 'process') {
    const line = spec.command == null ? '-' : spec.command.map(a => a === '' || /[\s"'\\]/.test(a) ? JSON.stringify(a) : a).join(' ')
    // a command may be 256 arguments of 4 KiB: its whole in vm show --json
    return `runs ${line.length > 200 ? `${line.slice(0, 197)}...` : line}`
  }
  if (spec.kernel != null) return `boots kernel ${spec.kernel}${spec.initrd != null ? `, initrd ${spec.initrd}` : ''}${spec.cmdline != null ? `, command line ${JSON.stringify(spec.cmdline)}` : ''}`
  if (spec.image != null) return `boots image ${spec.image}`
  return bootsFromVolume(spec) ? `boots from its first volume, ${firstDisk ?? spec.volumes[0]}` : 'boots nothing (no kernel, image or volume)'
}

/** what a VM boots, as the lease of its run records it (`boot`): a short digest of its boot fields */
export function bootDigest (spec: BootFields): string {
  // 96 bits: telling two boots of one VM apart, not a security check
  return createHash('sha256').update(JSON.stringify(BOOT_FIELDS.map(f => spec[f] ?? null))).digest('base64url').slice(0, 16)
}
