// The `qemu` driver: a real QEMU per VM, booted from a kernel (+ initrd + command line)
// or a disk image, its serial console appended to a log file, QMP on a unix socket in
// its run dir for status and graceful shutdown (ACPI powerdown, then kill after the
// grace time), a tap per VM on the node, and KVM only where a probe booted a kernel
// under it (TCG otherwise). QEMU runs in the VM's cgroups like a process VM.
import { existsSync, readdirSync, writeFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { which } from '../../netns/netns.ts'
import { probeAccel } from '../host/accel.ts'
import { probeSandbox, SANDBOX } from '../host/sandbox-probe.ts'
import type { Limits } from '../host/cgroups.ts'
import { createTap, deleteTap, DEFAULT_LINK_RANGE } from '../host/net.ts'
import { sleep, tailFile, type VmRecord } from './common.ts'
import { HostDriver, type CleanExitCause, type HostDriverComponents, type HostDriverInit } from './host-base.ts'
import { Qmp, qmpOnce } from './qmp.ts'
import { DriverError, GUEST_PAUSED, GUEST_STUCK, type DriverVmSpec, type ProbeResult, type VmInfo, type VmNetwork } from './types.ts'
import { MAX_RESTART_GRACE_MS, RESTART_STARTUP_MS } from '../timing.ts'
import { imageFormatOf, KERNEL_CMDLINE_MAX } from '../boot-checks.ts'

export type QemuDriverComponents = HostDriverComponents

export interface QemuDriverInit extends HostDriverInit {
  /** The QEMU binary; qemu-system-x86_64 from PATH by default. */
  qemu?: string
  /** The kernel the KVM probe boots; the newest /boot/vmlinuz-* by default. */
  probeKernel?: string
  /** Force an accelerator (skips the probe). */
  accel?: 'kvm' | 'tcg'
  /** How long a started QEMU may take to answer on QMP (ms). */
  readyTimeoutMs?: number
}

// QEMU's own memory beside the guest's: device model, TCG's translation cache (bounded below)
const OVERHEAD_MIB = 160
const TB_SIZE_MIB = 64
/**
 * How long a disk's requests wait for its NBD server to come back (an agent restarting,
 * which adopts the VM): the longest restart grace, so no grace outlasts it. A VM whose
 * agent never comes back is killed by the watchdog by then, so waiting costs nothing.
 */
export const NBD_RECONNECT_S = (MAX_RESTART_GRACE_MS + RESTART_STARTUP_MS) / 1000 + 10

const commaSafe = (s: string): string => s.replace(/,/g, ',,')

/** A boot disk image's -drive (a path with commas passes as a path, not as more options) */
export const imageDrive = (image: string, format: string): string => `file=${commaSafe(image)},format=${format},if=virtio`

/**
 * A volume's -drive, over NBD from this node's agent; cache=none: a guest's flush
 * reaches every replica's stable storage; werror=stop: a write the volume fails (its
 * holders out of reach past the write retry time, a full disk) pauses the guest, which
 * is told to go on every 10 s (watchGuest), instead of its file system turning read-only
 * (bb19: a guest on a node cut off from a holder got I/O errors at once). An export on a unix socket is given by its
 * parts, so QEMU reconnects when the socket closes: an agent restarted within the fence
 * timeout adopts its VMs, and their requests wait for it (up to NBD_RECONNECT_S) and
 * are run again, instead of failing the guest's disk. Any other URI goes as it is.
 */
export function diskDrive (uri: string): string {
  return diskOptions(uri).map(([k, v]) => `${k}=${commaSafe(v)}`).join(',')
}

/** a disk's drive options, in order (pure; diskDrive) */
export function diskOptions (uri: string): Array<[string, string]> {
  const m = /^nbd\+unix:\/\/\/([^?]+)\?socket=(.+)$/.exec(uri)
  const rest: Array<[string, string]> = [['if', 'virtio'], ['cache', 'none'], ['werror', 'stop']]
  if (m == null) return [['file', uri], ['format', 'raw'], ...rest]
  return [['driver', 'raw'], ['file.driver', 'nbd'], ['file.server.type', 'unix'], ['file.server.path', m[2]!], ['file.export', m[1]!], ['file.reconnect-delay', String(NBD_RECONNECT_S)], ...rest]
}

/**
 * The disks as a QEMU config file (`-readconfig`), in order (vda first) (pure): a VM
 * disk's export name carries its key, which kept any other NBD client off the running
 * VM's disk, and QEMU's command line is every local user's to read in `ps` (bb48).
 */
export function drivesConfig (disks: ReadonlyArray<{ uri: string }>): string {
  return disks.map((d, i) => {
    const opts = diskOptions(d.uri)
    for (const [k, v] of opts) if (/["\n\r\\]/.test(v)) throw new DriverError('bad-spec', `disks[${i}]: its ${k} holds a quote, a backslash or a line break, which a QEMU config file cannot carry`, `disks[${i}]`)
    return `[drive "vgdisk${i}"]\n${opts.map(([k, v]) => `  ${k} = "${v}"\n`).join('')}`
  }).join('\n')
}

/**
 * The guest kernel's command line: the user's, with the serial console the console log
 * reads (`console=ttyS0`) put first when it names no console (the kernel would write to
 * a VGA display there is none of, and `vgrid vm console` showed nothing), then vgrid's own.
 */
export function kernelCmdline (cmdline: string | undefined, extra: readonly string[]): string {
  const own = cmdline?.trim() ?? ''
  return [...(/(^|\s)console=/.test(own) ? [] : ['console=ttyS0']), ...(own === '' ? [] : [own]), ...extra].join(' ')
}

/**
 * How a guest that reset itself ended, from its console output (pure; undefined: it
 * powered off, or said nothing). QEMU, run with -no-reboot, exits with status 0 on a
 * reset as on a power-off, which read as a clean exit:
 * - `panicked`: its kernel panicked and, with `panic=N`, reset (bb53: a guest that could
 *   not mount its root "exited cleanly", and under --restart on-failure was left stopped
 *   as done);
 * - `rebooted`: it rebooted (Linux's "reboot: Restarting system"), which a user expects to
 *   bring it back, whatever its restart policy (it was left stopped under on-failure).
 * A guest that printed either and then powered off ended cleanly.
 */
export function guestReset (console: string): 'panicked' | 'rebooted' | undefined {
  const panic = console.lastIndexOf('Kernel panic - not syncing')
  const reboot = console.lastIndexOf('reboot: Restarting system')
  const last = Math.max(panic, reboot)
  if (last < 0 || console.includes('reboot: Power down', last)) return undefined
  return last === panic ? 'panicked' : 'rebooted'
}

export class QemuDriver extends HostDriver {
  readonly name = 'qemu' as const
  protected readonly boots = ['kernel', 'disk', 'volume'] as const
  private readonly qemuInit: QemuDriverInit
  private accel: 'kvm' | 'tcg' = 'tcg'
  /** QEMU takes -sandbox (built with seccomp): probed */
  private sandbox = false
  // a power button pressed before the guest watches it is lost: press again
  protected override readonly stopRepeatMs = 2000
  // QEMU's own error ("Failed to get write lock"): the guest had no time to print
  protected override readonly outputInReason = true

  constructor (components: QemuDriverComponents, init: QemuDriverInit) {
    super(components, init, 'qemu')
    this.qemuInit = init
  }

  private qemuBin (): string | undefined {
    return this.qemuInit.qemu ?? which('qemu-system-x86_64')
  }

  protected async probeDriver (): Promise<ProbeResult> {
    const qemu = this.qemuBin()
    if (qemu === undefined || !existsSync(qemu)) return { ok: false, detail: 'qemu-system-x86_64 not found (apt-get install qemu-system-x86)' }
    if (this.qemuInit.nodeNetns === undefined && process.getuid?.() !== 0) return { ok: false, detail: 'tap interfaces need root' }
    // beside the accelerator's probe (a second and a half)
    const sandboxed = probeSandbox(qemu, join(this.init.dataDir, 'dvmm', 'qemu-sandbox.json'))
    const unsandboxed = async (): Promise<string> => (this.sandbox = await sandboxed) ? '' : '; its QEMU has no seccomp sandbox (-sandbox): guests run without it'
    if (this.qemuInit.accel !== undefined) {
      this.accel = this.qemuInit.accel
      return { ok: true, accel: this.accel, detail: `${this.accel.toUpperCase()} (set by configuration)${await unsandboxed()}` }
    }
    let kernel = this.qemuInit.probeKernel
    if (kernel === undefined) {
      const k = readdirSync('/boot').filter(f => f.startsWith('vmlinuz-')).sort().at(-1)
      kernel = k === undefined ? '/boot/vmlinuz' : join('/boot', k)
    }
    const p = await probeAccel({ qemu, kernel, cacheFile: join(this.init.dataDir, 'dvmm', 'qemu-accel.json'), now: this.components.clock.now() })
    this.accel = p.accel
    return { ok: true, accel: p.accel, detail: `${p.detail}${await unsandboxed()}` }
  }

  protected check (spec: DriverVmSpec): void {
    const need = (file: string | undefined, field: string): void => {
      if (file !== undefined && !existsSync(file)) throw new DriverError('bad-spec', `${field}: ${file} does not exist`, field)
    }
    if (spec.boot.kind === 'kernel') { need(spec.boot.kernel, 'boot.kernel'); need(spec.boot.initrd, 'boot.initrd') }
    if (spec.boot.kind === 'disk') {
      need(spec.boot.image, 'boot.image')
      const f = imageFormatOf(spec.boot.image)
      if ('problem' in f) throw new DriverError('bad-spec', `boot.image: ${f.problem}`, 'boot.image')
      if (spec.boot.format !== undefined && spec.boot.format !== f.format) throw new DriverError('bad-spec', `boot.format: ${spec.boot.image} is a ${f.format} image, not ${spec.boot.format}`, 'boot.format')
    }
  }

  protected override limits (spec: DriverVmSpec): Limits {
    return { cpus: Math.max(spec.vcpus, 1), memoryBytes: (spec.memoryMiB + OVERHEAD_MIB) * 1024 * 1024 }
  }

  protected async setupNetwork (spec: DriverVmSpec, slot: number): Promise<VmNetwork> {
    return await createTap(this.netKey(spec.id), this.init.linkRange ?? DEFAULT_LINK_RANGE, slot, this.init.nodeNetns, spec.overlay)
  }

  protected async teardownNetwork (rec: VmRecord): Promise<void> {
    await deleteTap(this.netKey(rec.id), rec.nodeNetns)
  }

  protected command (rec: VmRecord, dir: string): { argv: string[], netns?: string } {
    const s = rec.spec
    const kvm = this.accel === 'kvm'
    const argv = [this.qemuBin() ?? 'qemu-system-x86_64',
      '-name', `vgrid-${s.id}`,
      '-machine', 'q35',
      '-accel', kvm ? 'kvm' : `tcg,tb-size=${TB_SIZE_MIB}`,
      '-cpu', kvm ? 'host' : 'max',
      '-smp', String(Math.max(1, Math.ceil(s.vcpus))),
      '-m', String(s.memoryMiB),
      '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      // QEMU runs as root: its seccomp filter keeps a guest that breaks out of it from
      // starting programs, raising privileges or using obsolete calls (bb48)
      ...this.sandbox ? ['-sandbox', SANDBOX] : [],
      '-chardev', `file,id=con,path=${commaSafe(join(dir, 'console.log'))},append=on`, '-serial', 'chardev:con',
      '-qmp', `unix:${commaSafe(join(dir, 'qmp.sock'))},server=on,wait=off`,
      // terminal names told while it runs (setNames): a virtio port the guest's init reads
      '-device', 'virtio-serial-pci,id=vser',
      '-chardev', `socket,id=names,path=${commaSafe(join(dir, NAMES_SOCKET))},server=on,wait=off`,
      '-device', `virtserialport,bus=vser.0,chardev=names,name=${NAMES_PORT}`]
    if (s.boot.kind === 'kernel') {
      const extra: string[] = [`vgrid.name=${s.id}`]
      if ((s.disks?.length ?? 0) > 0) extra.push(`vgrid.disks=${s.disks!.length}`)
      if (rec.network !== undefined && !/(^|\s)vgrid\.ip=/.test(s.boot.cmdline ?? '')) {
        extra.push(`vgrid.ip=${rec.network.vmAddress}/${rec.network.prefix}`, `vgrid.gw=${rec.network.hostAddress}`)
        // the overlay address, and the terminal names at boot (later ones: setNames)
        if (s.overlay !== undefined) {
          extra.push(`vgrid.overlay=${s.overlay.address}`)
          const names = hostsList(s.overlay.names ?? {})
          if (names !== '') extra.push(`vgrid.hosts=${names}`)
        }
      }
      const append = kernelCmdline(s.boot.cmdline, extra)
      // the kernel would cut it, or not boot at all (bb54): said, not a guest silent for ever
      const bytes = Buffer.byteLength(append)
      if (bytes > KERNEL_CMDLINE_MAX) {
        const hosts = extra.find(a => a.startsWith('vgrid.hosts='))
        throw new DriverError('bad-spec', `its kernel command line would be ${bytes} bytes, over the ${KERNEL_CMDLINE_MAX} an x86 kernel takes${hosts != null ? ` (its terminal names, vgrid.hosts, take ${Buffer.byteLength(hosts)}: fewer outputs, or a shorter cmdline)` : ': a shorter cmdline'}`, 'boot.cmdline')
      }
      argv.push('-kernel', s.boot.kernel, '-append', append)
      if (s.boot.initrd !== undefined) argv.push('-initrd', s.boot.initrd)
    } else if (s.boot.kind === 'disk') {
      // the format found in the image (checked at start): a qcow2 image boots as qcow2
      const found = imageFormatOf(s.boot.image)
      argv.push('-drive', imageDrive(s.boot.image, s.boot.format ?? ('format' in found ? found.format : 'raw')))
    }
    // boot kind `volume`: nothing more; the firmware boots the first disk, vda, the first volume
    // by a file of the run dir (root's alone), not the command line: the export names' keys (drivesConfig)
    if ((s.disks?.length ?? 0) > 0) {
      const cfg = join(dir, 'drives.cfg')
      writeFileSync(cfg, drivesConfig(s.disks!), { mode: 0o600 })
      argv.push('-readconfig', cfg)
    }
    if (rec.network !== undefined) argv.push('-netdev', `tap,id=n0,ifname=${rec.network.hostIf},script=no,downscript=no`, '-device', 'virtio-net-pci,netdev=n0')
    rec.detail = { accel: this.accel }
    // the tap lives in the node's namespace, so QEMU runs there
    return { argv, netns: rec.nodeNetns }
  }

  protected override async ready (rec: VmRecord): Promise<void> {
    const sock = join(this.runs.dir(rec.id), 'qmp.sock')
    const until = this.components.clock.now() + (this.qemuInit.readyTimeoutMs ?? 10_000)
    let last = ''
    while (this.components.clock.now() < until) {
      if (!this.alive(rec)) return // start() reports the exit with the console's tail
      try {
        const st = await qmpOnce(sock, 'query-status') as { status?: string }
        if (st.status === 'running') return
        last = `status ${String(st.status)}`
      } catch (err) { last = (err as Error).message }
      await sleep(50)
    }
    throw new Error(`QEMU did not report running on QMP: ${last}`)
  }

  protected async requestStop (rec: VmRecord): Promise<void> {
    const q = await Qmp.open(join(this.runs.dir(rec.id), 'qmp.sock'))
    try { await q.execute('system_powerdown') } finally { q.close() }
  }

  protected override cleanExitCause (rec: VmRecord): CleanExitCause | undefined {
    if (rec.consoleStart === undefined) return undefined
    const how = guestReset(tailFile(this.runs.console(rec.id), 64 * 1024, rec.consoleStart))
    // what the guest printed stays out of the reason, which every local user reads (bb48)
    if (how === 'panicked') return { reason: 'crashed', why: `its guest's kernel panicked (vgrid vm console ${rec.id} shows why)` }
    return how === 'rebooted' ? { reason: 'rebooted' } : undefined
  }

  protected override extraDetail (rec: VmRecord): Record<string, string> {
    return { accel: rec.detail?.accel ?? this.accel }
  }

  /** per running VM: when its guest was last looked at, why QEMU paused it (absent: it runs), when `cont` was last sent */
  private readonly guests = new Map<string, { lookedAt: number, busy: boolean, paused?: string, contAt: number, silentSince?: number }>()

  /**
   * A volume that fails a write makes QEMU pause the guest (werror=stop: diskDrive; a
   * boot image only on ENOSPC, QEMU's default) until told to go on: a tester's guest stood frozen for good while
   * `vm ls` said running. Looked at every GUEST_LOOK_MS over QMP; a paused guest is
   * said (the driver's `paused` event) and sent `cont` every RESUME_EVERY_MS, which
   * runs the failed requests again: once the volume takes writes, the guest goes on.
   */
  protected override watchGuest (rec: VmRecord): void {
    const now = this.components.clock.now()
    let g = this.guests.get(rec.id)
    if (g == null) { g = { lookedAt: 0, busy: false, contAt: 0 }; this.guests.set(rec.id, g) }
    if (g.busy || now - g.lookedAt < GUEST_LOOK_MS) return
    g.busy = true
    g.lookedAt = now
    const guest = g
    this.lookAtGuest(rec, guest).then(() => { guest.silentSince = undefined }, err => { this.qmpSilent(rec, guest, err as Error) }).finally(() => { guest.busy = false })
  }

  /**
   * QEMU did not answer a look: once it has not for QMP_SILENT_MS, the guest is said
   * stuck (vm ls, health), as a paused one is, rather than running (bb29: a guest frozen
   * behind a leaked QMP connection showed as running, health ok, for 11 minutes)
   */
  private qmpSilent (rec: VmRecord, g: { paused?: string, silentSince?: number }, err: Error): void {
    const now = this.components.clock.now()
    g.silentSince ??= now
    if (now - g.silentSince < QMP_SILENT_MS) return
    // the clock counts monotonic time: the wall time it stands for
    const since = new Date(Date.now() - (now - g.silentSince)).toISOString()
    const why = `${GUEST_STUCK} since ${since} (${err.message}): the guest may be stuck; \`vgrid vm stop\` kills it after the grace time`
    // said once; and a guest already said paused after a disk error stays so (its QEMU may hang on the failing disk: rv36)
    if (g.paused != null) return
    g.paused = why
    this.components.log?.warn('QEMU does not answer on its control socket', { vm: rec.id, since, err: err.message })
    this.emit('paused', { id: rec.id, why, at: now })
  }

  private async lookAtGuest (rec: VmRecord, g: { paused?: string, contAt: number, silentSince?: number }): Promise<void> {
    const q = await Qmp.open(join(this.runs.dir(rec.id), 'qmp.sock'))
    try {
      const st = await q.execute('query-status') as { status?: string }
      // it answers: not stuck, whatever the commands after this one do
      g.silentSince = undefined
      const why = st.status === 'io-error' ? pausedWhy(await q.execute('query-block'), rec.spec.disks ?? []) : undefined
      if (why !== g.paused) {
        g.paused = why
        this.emit('paused', { id: rec.id, why: why ?? null, at: this.components.clock.now() })
      }
      const now = this.components.clock.now()
      if (why != null && now - g.contAt >= RESUME_EVERY_MS) {
        g.contAt = now
        await q.execute('cont')
      }
    } finally { q.close() }
  }

  protected override info (rec: VmRecord): VmInfo {
    const info = super.info(rec)
    const g = this.guests.get(rec.id)
    if (rec.state !== 'running') this.guests.delete(rec.id)
    else if (g?.paused != null) info.paused = g.paused
    return info
  }

  /** per running VM, the connection to its names port (held open: QEMU passes data on once the guest opens the port) */
  private readonly namesPorts = new Map<string, Socket>()

  /**
   * A link made or removed while the guest runs: a line "hosts N=A,..." on its names
   * port, which its init turns into /etc/hosts. A guest started by an earlier release
   * has no such port: it learns its names at its next boot.
   */
  async setNames (id: string, names: Record<string, string>): Promise<void> {
    const rec = this.load(id)
    if (rec == null || (rec.state !== 'running' && rec.state !== 'starting')) return
    const path = join(this.runs.dir(id), NAMES_SOCKET)
    if (!existsSync(path)) return
    let port = this.namesPorts.get(id)
    if (port == null || port.destroyed) {
      port = await new Promise<Socket>((resolve, reject) => { const s = connect(path, () => { s.off('error', reject); resolve(s) }).once('error', reject) })
      const held = port
      held.on('error', () => {})
      held.on('close', () => { if (this.namesPorts.get(id) === held) this.namesPorts.delete(id) })
      held.resume() // the guest says nothing; drop it if it ever does
      this.namesPorts.set(id, held)
    }
    port.write(namesLine(names))
  }

  override async close (): Promise<void> {
    for (const s of this.namesPorts.values()) s.destroy()
    this.namesPorts.clear()
    this.guests.clear()
    await super.close()
  }
}

/** how often a running guest's status is asked over QMP */
export const GUEST_LOOK_MS = 2000
/** how often a guest QEMU paused after a disk error is told to go on */
export const RESUME_EVERY_MS = 10_000
/** how long QEMU may not answer a look before the guest is said stuck */
export const QMP_SILENT_MS = 30_000

/** the export name of an NBD URI on a unix socket */
const NBD_EXPORT = /^nbd\+unix:\/\/\/([^?]+)/

/** a volume's path from the NBD export a VM's disk opens: its path without the "/", pinned as `~EPOCH~KEY` (gvs/export-names.ts pinnedName) */
export function volumeOfExport (name: string): string {
  let path = name.replace(/~\d+(~[0-9a-zA-Z]+)?$/, '')
  try { path = decodeURIComponent(path) } catch {}
  return `/${path}`
}

/**
 * Why QEMU paused a guest (status io-error), from `query-block`: the disks whose
 * io-status is not ok, named by their NBD export where they are volumes (pure).
 */
export function pausedWhy (blocks: unknown, disks: ReadonlyArray<{ uri: string }>): string {
  const bad = (Array.isArray(blocks) ? blocks as Array<{ device?: unknown, 'io-status'?: unknown, inserted?: { file?: unknown } }> : [])
    .filter(b => typeof b['io-status'] === 'string' && b['io-status'] !== 'ok')
    .map(b => {
      const file = typeof b.inserted?.file === 'string' ? b.inserted.file : ''
      const exp = disks.map(d => NBD_EXPORT.exec(d.uri)?.[1]).find(e => e != null && file.includes(e))
      const name = exp != null ? `volume ${volumeOfExport(exp)}` : `disk ${String(b.device ?? '?')}`
      return `${name} ${b['io-status'] === 'nospace' ? 'found no space left (ENOSPC)' : 'failed a request'}`
    })
  return `${GUEST_PAUSED}${bad.length > 0 ? ` (${bad.join('; ')})` : ''}: it is told to go on every ${RESUME_EVERY_MS / 1000} s, and runs again once the disk takes the write`
}

/** the virtio port a guest reads its terminal names from, and its socket in the VM's run dir */
export const NAMES_PORT = 'org.vgrid.names'
const NAMES_SOCKET = 'names.sock'

/** "db=100.64.0.9,cache=100.64.0.10": terminal names as the guest's init reads them, on its command line and its names port */
const hostsList = (names: Record<string, string>): string => Object.entries(names).map(([n, a]) => `${n}=${a}`).join(',')

/** a names port line: "hosts db=100.64.0.9,cache=100.64.0.10" */
export const namesLine = (names: Record<string, string>): string => `hosts ${hostsList(names)}\n`
