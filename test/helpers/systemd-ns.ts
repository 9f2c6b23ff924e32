// Test helper: a real systemd (the machine's own /lib/systemd/systemd) running as PID 1
// of new PID, mount, UTS, IPC, network and cgroup namespaces, for testing what
// install.sh does with systemd on machines where systemd is not PID 1 (CI sandboxes,
// containers). Commands run "on" that machine through nsenter; the test process stays
// outside.
//
// What keeps the real machine untouched (the same measures systemd-nspawn takes):
// - a private mount namespace (propagation private), in which /run, /etc/systemd/system
//   and /var/log/journal are fresh tmpfs: install.sh's unit file, systemd's sockets and
//   the journal exist only in there and vanish with it;
// - systemd sees a whitelist of units only: the *.target and *.slice files and
//   journald, without the distribution's .wants/ links (so no udev, tmpfiles (which
//   would empty /tmp), sysctl, getty, ...), and no generators (no fstab, swap, ...);
// - /sys and /proc/sys read-only; a private network namespace with only loopback (so
//   npm, inside install.sh, can use its cache only, and the agent is alone); a UTS
//   namespace (a host name systemd sets stays in there); /dev/console bound to a file;
// - a cgroup of its own, created here under the machine's cgroup v2 hierarchy and made
//   the root of its cgroup namespace: everything systemd starts lives below it, and
//   stop() kills that cgroup (cgroup.kill) and systemd (PID 1 there: all its namespace
//   dies with it) by PID, then removes the cgroup directories.
// A run that died without stop() leaves a cgroup named after its PID: the next start()
// removes it (and its processes) once that PID is gone.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { isAlive, which } from '../../node/netns/netns.ts'
import { onInterrupt, offInterrupt, type Cleanup } from '../harness/index.ts'

/** Every cgroup made here is named PREFIX-<owner PID>-<n>. */
const CGROUP_PREFIX = 'vgrid-systemd-test'
const BOOT_MS = 30_000

/** Where the systemd binary is, or undefined. */
function systemdBinary (): string | undefined {
  return ['/usr/lib/systemd/systemd', '/lib/systemd/systemd'].find(p => existsSync(p))
}

/** The mount point of the machine's cgroup v2 hierarchy (/sys/fs/cgroup, or .../unified on hybrid setups). */
function cgroup2Mount (): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
    const [pre, post] = line.split(' - ')
    if (post?.split(' ')[0] !== 'cgroup2') continue
    const f = pre!.split(' ')
    if (f[3] === '/') return f[4]
  }
  return undefined
}

/** PIDs in the cgroup `dir` and every cgroup below it. */
function cgroupPids (dir: string): number[] {
  const pids: number[] = []
  try {
    for (const l of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')) if (l !== '') pids.push(Number(l))
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) pids.push(...cgroupPids(join(dir, e.name)))
  } catch {}
  return pids
}

/** Removes the cgroup `dir` and everything below it; false if some are still busy. */
function removeCgroup (dir: string): boolean {
  let ok = true
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) ok = removeCgroup(join(dir, e.name)) && ok
    rmdirSync(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') ok = false
  }
  return ok
}

/** Kills every process in the cgroup subtree `dir` (cgroup.kill, else by PID). */
function killCgroup (dir: string): void {
  try {
    writeFileSync(join(dir, 'cgroup.kill'), '1')
    return
  } catch {}
  for (const p of cgroupPids(dir)) try { process.kill(p, 'SIGKILL') } catch {}
}

/** Removes the cgroups (and their processes) of runs whose owner PID is gone. */
async function removeStale (root: string): Promise<void> {
  for (const name of readdirSync(root)) {
    const m = new RegExp(`^${CGROUP_PREFIX}-(\\d+)-\\d+$`).exec(name)
    if (m == null || isAlive(Number(m[1]))) continue
    process.stderr.write(`systemd-ns: removing the leftovers of an earlier run: cgroup ${join(root, name)}\n`)
    const dir = join(root, name)
    for (let i = 0; i < 50 && !removeCgroup(dir); i++) {
      killCgroup(dir)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }
}

export interface Run { code: number | null, stdout: string, stderr: string }

// Runs as PID 1 of the new namespaces (in a cgroup namespace rooted at its own cgroup,
// see INIT), then becomes systemd. $1: the systemd binary.
const SETUP = String.raw`
set -eu
systemd=$1
units=$(readlink -f /usr/lib/systemd/system)
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/vgrid-test/units/sockets.target.wants /run/vgrid-test/units/sysinit.target.wants
cp -a "$units"/*.target "$units"/*.slice "$units"/systemd-journald.service "$units"/systemd-journald.socket \
  /run/vgrid-test/units/
ln -s ../systemd-journald.socket /run/vgrid-test/units/sockets.target.wants/
ln -s ../systemd-journald.service /run/vgrid-test/units/sysinit.target.wants/
mount --bind /run/vgrid-test/units "$units"
for d in /usr/lib/systemd/system-generators /etc/systemd/system-generators /usr/local/lib/systemd/system-generators \
  /usr/local/lib/systemd/system; do
  if [ -d "$d" ]; then mount -t tmpfs -o mode=755 tmpfs "$(readlink -f "$d")"; fi
done
mkdir -p /etc/systemd/system /var/log/journal
mount -t tmpfs -o mode=755 tmpfs /etc/systemd/system
mount -t tmpfs -o mode=2755 tmpfs /var/log/journal
mkdir -p /run/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\nReadKMsg=no\n' >/run/systemd/journald.conf.d/vgrid-test.conf
: >/run/vgrid-test/console
mount --bind /run/vgrid-test/console /dev/console
if mountpoint -q /sys/fs/cgroup; then umount -R /sys/fs/cgroup; fi
mount -o remount,bind,ro /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
exec env -i container=vgrid-test PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  "$systemd" --unit=multi-user.target --show-status=no --log-target=console --log-level=info
`

// PID 1 of the new namespaces: moves itself (0: the writer) into the cgroup $1 (a path
// on the machine's cgroup mount, still visible here), then makes the cgroup namespace
// rooted there and runs SETUP ($2) with the systemd binary $3, keeping PID 1. So only
// what runs in the namespaces is in that cgroup; unshare, outside, is not: systemd
// must be able to enable controllers in its root cgroup, which has to be free of
// other processes for that (cgroup v2's "no internal processes" rule).
const INIT = String.raw`
set -eu
echo 0 >"$1/cgroup.procs"
exec unshare --cgroup -- bash -c "$2" vgrid-systemd-init "$3"
`

let counter = 0

export class SystemdNs implements Cleanup {
  /** Host PID of systemd (PID 1 in its namespace). */
  pid = 0
  /** its cgroup, as a path under the machine's cgroup v2 mount */
  readonly cgroup: string
  private proc?: ChildProcess
  private out = ''
  private stopped = false

  private constructor (cgroup: string) {
    this.cgroup = cgroup
  }

  /** Why a systemd namespace cannot be made here, or undefined if it can be tried. */
  static unsupported (): string | undefined {
    if (process.platform !== 'linux') return 'needs Linux'
    if (process.getuid?.() !== 0) return 'needs root (namespaces, cgroups, install.sh)'
    if (systemdBinary() == null) return 'no systemd binary (apt-get install systemd)'
    for (const p of ['systemctl', 'unshare', 'nsenter', 'mountpoint', 'curl']) {
      if (which(p) == null) return `\`${p}\` not found`
    }
    if (cgroup2Mount() == null) return 'no cgroup v2 hierarchy mounted'
    return undefined
  }

  /** Boots systemd in its namespaces; rejects (having cleaned up) if it does not come up. */
  static async start (): Promise<SystemdNs> {
    const why = SystemdNs.unsupported()
    if (why != null) throw new Error(why)
    const root = cgroup2Mount()!
    await removeStale(root)
    const ns = new SystemdNs(join(root, `${CGROUP_PREFIX}-${process.pid}-${++counter}`))
    onInterrupt(ns)
    try {
      await ns.boot()
    } catch (err) {
      const detail = ns.diagnostics()
      await ns.stop()
      throw new Error(`${(err as Error).message}\n${detail}`)
    }
    return ns
  }

  private async boot (): Promise<void> {
    mkdirSync(this.cgroup)
    const proc = spawn('unshare', ['--pid', '--fork', '--kill-child', '--mount', '--propagation', 'private',
      '--mount-proc', '--uts', '--ipc', '--net', '--', 'bash', '-c', INIT, 'vgrid-systemd-init', this.cgroup, SETUP,
      systemdBinary()!], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.proc = proc
    proc.stdout.on('data', (d: Buffer) => { this.out += d.toString() })
    proc.stderr.on('data', (d: Buffer) => { this.out += d.toString() })
    const start = Date.now()
    // systemd is the child unshare forks
    while (this.pid === 0) {
      if (proc.exitCode != null || proc.signalCode != null) throw new Error(`the namespace's init exited (${proc.exitCode ?? proc.signalCode})`)
      if (Date.now() - start > BOOT_MS) throw new Error('systemd did not start')
      try {
        const child = Number(readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8').trim().split(' ')[0])
        if (child > 0 && readFileSync(`/proc/${child}/comm`, 'utf8').trim() === 'systemd') this.pid = child
      } catch {}
      if (this.pid === 0) await new Promise(resolve => setTimeout(resolve, 50))
    }
    // its private socket appears once it can take requests; then wait for the boot to end
    while (!existsSync(this.path('/run/systemd/private'))) {
      if (!isAlive(this.pid)) throw new Error('systemd exited while starting')
      if (Date.now() - start > BOOT_MS) throw new Error('systemd did not open /run/systemd/private')
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    const r = await this.exec('systemctl', ['is-system-running', '--wait'], Math.max(1000, BOOT_MS - (Date.now() - start)))
    const state = r.stdout.trim()
    if (state !== 'running' && state !== 'degraded') throw new Error(`systemd's state after boot: ${state || r.stderr.trim()}`)
    if (state === 'degraded') {
      const failed = await this.exec('systemctl', ['--failed', '--no-pager', '--plain', '--no-legend'])
      this.out += `(degraded: ${failed.stdout.trim()})\n`
    }
  }

  /** A path as systemd's mount namespace sees it, readable from here. */
  path (p: string): string {
    return `/proc/${this.pid}/root${p}`
  }

  /** Runs a command in systemd's namespaces (not its cgroup); kills it (by PID) after `ms`. */
  async exec (cmd: string, args: string[], ms = 30_000): Promise<Run> {
    return await new Promise((resolve, reject) => {
      const p = spawn('nsenter', ['-t', String(this.pid), '-m', '-u', '-i', '-n', '-p', '-C', '--', cmd, ...args],
        { stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      p.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
      p.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
      const timer = setTimeout(() => { if (p.pid != null) try { process.kill(p.pid, 'SIGKILL') } catch {} }, ms)
      p.once('error', reject)
      p.once('close', code => {
        clearTimeout(timer)
        resolve({ code, stdout, stderr })
      })
    })
  }

  /** `systemctl show -p NAME --value UNIT` */
  async show (unit: string, prop: string): Promise<string> {
    return (await this.exec('systemctl', ['show', '-p', prop, '--value', unit])).stdout.trim()
  }

  /** Host PIDs of the processes in the cgroup of `unit` (e.g. vgrid.service). */
  unitPids (unit: string): number[] {
    return cgroupPids(join(this.cgroup, 'system.slice', unit))
  }

  /** Host PIDs of every process systemd runs (itself included). */
  allPids (): number[] {
    return cgroupPids(this.cgroup)
  }

  /** The host PID of the process that is `nsPid` in systemd's PID namespace. */
  hostPid (nsPid: number): number | undefined {
    for (const p of this.allPids()) {
      try {
        const m = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))
        if (Number(m?.[1]?.trim().split(/\s+/).pop()) === nsPid) return p
      } catch {}
    }
    return undefined
  }

  /** What systemd and the boot said, and the journal's last lines: for failure messages. */
  diagnostics (): string {
    let consoleLog = ''
    try { consoleLog = readFileSync(this.path('/run/vgrid-test/console'), 'utf8') } catch {}
    return `--- systemd namespace (pid ${this.pid}) output ---\n${this.out}${consoleLog}`
  }

  async journal (unit: string, lines = 40): Promise<string> {
    const r = await this.exec('journalctl', ['-u', unit, '-n', String(lines), '--no-pager'])
    return r.stdout + r.stderr
  }

  /** Kills systemd (and with it its whole namespace) by PID, then whatever is left in its cgroup; removes the cgroups. */
  async stop (): Promise<void> {
    if (this.stopped) return
    const proc = this.proc
    const running = proc != null && proc.exitCode == null && proc.signalCode == null
    // PID 1 of a PID namespace: when it dies, the kernel kills the rest of the namespace,
    // and unshare, its parent, reaps it and exits. Before systemd runs, unshare goes.
    if (this.pid !== 0) try { process.kill(this.pid, 'SIGKILL') } catch {}
    else if (running && proc.pid != null) try { process.kill(proc.pid, 'SIGKILL') } catch {}
    if (running) {
      await new Promise<void>(resolve => {
        const t = setTimeout(resolve, 10_000)
        proc.once('exit', () => { clearTimeout(t); resolve() })
      })
    }
    for (let i = 0; i < 100 && !removeCgroup(this.cgroup); i++) {
      killCgroup(this.cgroup)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    this.stopped = true
    offInterrupt(this)
  }

  /** For the exit handler: kills everything in the cgroup at once, removes what it can. */
  stopSync (): void {
    if (this.stopped) return
    if (this.pid !== 0) try { process.kill(this.pid, 'SIGKILL') } catch {}
    try {
      if (statSync(this.cgroup).isDirectory()) killCgroup(this.cgroup)
    } catch {}
    removeCgroup(this.cgroup)
  }
}
