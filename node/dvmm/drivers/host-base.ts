// What the process and qemu drivers share: a VM is a process tree in its own cgroups,
// started through a small shell wrapper that joins the cgroups before anything of the
// VM runs and writes the VM's exit status to its run dir (so the status survives an
// agent restart: the wrapper is the VM's session leader, not the agent's child). The
// run dir's vm.json lets list() find VMs again; a pid counts as the VM only while its
// start time in /proc matches the recorded one.
import { spawn } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import type { Logger } from '../../log.ts'
import { ipPath } from '../../netns/netns.ts'
import { DEFAULT_LINK_RANGE, freeSlot } from '../host/net.ts'
import { WATCHDOG_KILLED } from '../watchdog/kill.ts'
import { watchdogPaths } from '../watchdog/paths.ts'
import { liveSupervisor } from '../watchdog/supervisor-pid.ts'
import { cpuOnlyGroup, createGroups, dataDirScope, groupPaths, groupPids, killGroups, vmGroupName, oomKills, probeCgroups, readCpuLimit, removeGroups, type CgroupLayout, type Limits } from '../host/cgroups.ts'
import { readConsole, type ConsoleRead, type ConsoleSince } from './console-read.ts'
import { classifyExit, currentBootId, decodeShellStatus, earlierConsole, EARLIER_CONSOLE_BYTES, endedAtOnce, tailBytes, procStat, ranBeforeBoot, RunDirs, sameProcessAlive, sleep, tailFile, ticksToMs, trimConsole, validateSpec, type VmRecord } from './common.ts'
import { runDirProblem } from '../host/probe.ts'
import { DriverError, type DriverBoot, type DriverEvents, type DriverName, type DriverVmSpec, type ProbeResult, type VmDriver, type VmInfo, type VmNetwork, type VmState } from './types.ts'

/**
 * How often VMs' console logs are checked for their size (common.ts trimConsole): a log
 * grows past its cap by what the VM writes meanwhile (bb41: `yes` in a VM of 0.2 CPU
 * swung between 0.5 and 2 GB on the data disk with checks 10 s apart). A stat a VM.
 */
const CONSOLE_CHECK_MS = 250

export interface HostDriverComponents {
  log: Logger
  clock: { now: () => number }
}

export interface HostDriverInit {
  dataDir: string
  /** The per-node range VM links take their /30 from. */
  linkRange?: string
  /** The namespace the node's ends of VM links live in (tests); the root one when unset. */
  nodeNetns?: string
  /** How often VMs are checked for exits (ms). */
  pollMs?: number
}

// The wrapper starts the guard, joins the VM's groups, and then, where the hierarchy
// allows (v1, a cpu group of its own), leaves the VM's CPU group for its parent (no
// quota), keeping that group's cgroup.procs open as fd 5 for the VM's own process to
// join again before it runs anything (INNER; `ip netns exec` hides /sys/fs/cgroup, an
// open file still writes). The wrapper records the VM's exit: inside a tiny quota the
// VM's leftover processes took all of it, and an out-of-memory kill was seen about two
// minutes late (bb25). It stays in the memory group: a kill by the groups finds it.
// The guard is started first, outside the VM's groups (below).
// (`command exec`: a redirection that fails on the bare special builtin ends dash; this
// way the wrapper stays in the CPU group instead, as on v2.)
const OUTER = 'if [ -p "$VGRID_GUARD" ]; then nice -n -20 /bin/bash -c "$VGRID_GUARD_SH" vgrid-guard "$VGRID_GUARD" "$VGRID_GUARD_BEAT" $$ $VGRID_CGROUPS & fi; ' +
  'for g in $VGRID_CGROUPS; do echo $$ > "$g/cgroup.procs" || exit 125; done; ' +
  'for g in $VGRID_CGROUPS; do if [ -e "$g/cpu.cfs_quota_us" ] && [ ! -e "$g/memory.limit_in_bytes" ]; then command exec 5> "$g/cgroup.procs" && echo $$ > "${g%/*}/cgroup.procs" && export VGRID_REJOIN=1; fi; done 2>/dev/null; ' +
  'unset VGRID_CGROUPS VGRID_GUARD VGRID_GUARD_BEAT VGRID_GUARD_SH; exec "$@"'
// The VM's guard: a bash of its own in the VM's session (on v2 in its group), started before
// anything of the VM runs. It holds the fencing watchdog's FIFO open for reading, which
// the supervisor holds open for writing while it lives (watchdog/supervisor-main.ts),
// and wakes each second (read -t: no process forked) to read the supervisor's beats.
// The supervisor gone (killed with the agent: EOF), or its beats stopped for longer
// than the watchdog's timeout in force (stopped or stalled while the agent is dead),
// nothing would end the VM before another node takes it over: the guard marks the run
// as the watchdog does and kills the VM's session and groups (its groups first: the
// session's kill ends the guard too). It ends with the VM otherwise (below). A
// supervisor that writes no beats (an earlier release) is only watched for its end.
// Where the hierarchy allows (v1) it joins the parents of the VM's groups, which have no
// quota or limit of the VM's: a VM stuck in its out-of-memory kill in a tiny CPU quota
// took all of it, and the guard never ran (bb25); and in the VM's memory group it was the
// out-of-memory killer's choice as soon as it lifted the quota, the VM's processes
// surviving it (CI: where root lacks CAP_SYS_RESOURCE, as on these machines, its -1000
// score is refused). It is started before the wrapper joins the VM's groups, so no part
// of its start runs in them. Where the hierarchy does not allow it (v2: no process in an
// inner group) it shares the VM's quota and memory, with the -1000 score where it may.
// It runs at nice -20 (the VM's own processes, however busy, do not delay
// its tick: the tester's 30 busy loops at 0.05 CPU stretched it to 2.5 s at nice 0),
// forks nothing (bash's EPOCHREALTIME for the time). When it fires it lifts the VM's
// CPU quota first: a killed process needs CPU time to exit. It writes its pid to `guard` in the run
// dir: one found gone while the VM runs is started again by the driver (guardCheck),
// which goes where the first went as its first act. It opens the FIFO through a read-write
// handle it then drops, so the open never waits for a writer (a supervisor already gone
// is an end of file at once, where a blocking open hung for ever, fencing nothing), and
// a guard whose VM is gone, its groups empty but for itself, exits, also when the
// supervisor's end comes after the VM's (an agent that stops once its VMs have: rv56), and
// the driver's clean-up ends it (`endGuard`: on v1 it is in none of the groups the
// clean-up kills, and a restart at once would find it watching the next run, with this
// run's process group); while a process the VM left runs in them (its main process
// ended, a child it put in the background did not) it guards on.
const GUARD = 'trap "" TERM INT HUP; f=$1; b=$2; pg=$3; shift 3; ' +
  'for g in "$@"; do if [ -e "$g/cpu.cfs_quota_us" ] || [ -e "$g/memory.limit_in_bytes" ]; then echo $$ > "${g%/*}/cgroup.procs"; else echo $$ > "$g/cgroup.procs"; fi; done 2>/dev/null; echo -1000 > /proc/$$/oom_score_adj 2>/dev/null; echo $$ > guard; ' +
  'gone () { if kill -0 "$pg" 2>/dev/null; then st=; read -r st < "/proc/$pg/stat"; st=${st##*) }; [ "${st%% *}" = Z ] || return 1; fi 2>/dev/null; for g in "$@"; do while read p; do [ "$p" = $$ ] || return 1; done < "$g/cgroup.procs"; done 2>/dev/null; return 0; }; ' +
  'exec 4<> "$f" || exit 0; exec 3< "$f"; exec 4>&-; last=; still=0; why=; ' +
  'while :; do read -t 1 -u 3 _; [ $? -gt 128 ] || break; ' +
  'gone "$@" && exit 0; ' +
  'n=; t=; read n t < "$b" 2>/dev/null; ' +
  'if [ "$n" != "$last" ]; then last=$n; still=0; else still=$((still + 1)); fi; ' +
  'case $t in ""|*[!0-9]*) ;; *) if [ $((still * 1000)) -ge $t ]; then why=" stalled"; break; fi;; esac; done; ' +
  'gone "$@" && exit 0; ' +
  'now=${EPOCHREALTIME//[.,]/}; echo "${now:0:13} guard$why" > ' + WATCHDOG_KILLED + '; ' +
  'for g in "$@"; do echo max > "$g/cpu.max"; echo -1 > "$g/cpu.cfs_quota_us"; done 2>/dev/null; ' +
  'for g in "$@"; do while read p; do [ "$p" = $$ ] || kill -KILL "$p" 2>/dev/null; done < "$g/cgroup.procs"; done; ' +
  'kill -KILL -- "-$pg" 2>/dev/null'
// a caught TERM (unlike an ignored one) is reset in the VM's process, and lets this
// shell outlive it to record its status
/** a running VM that has written no guard file this long after its start has none: it gets one */
const GUARD_LATE_MS = 10_000
// (writing 0 to cgroup.procs moves the writer: the subshell joins the CPU group it left, then becomes the VM)
const INNER = 'trap true TERM INT HUP; f=$VGRID_EXIT; r=$VGRID_REJOIN; unset VGRID_EXIT VGRID_REJOIN; ' +
  '(if [ -n "$r" ]; then echo 0 >&5 || exit 125; fi; exec 5>&- "$@"); echo $? > "$f"'

/** what a run that exited with status 0, unasked, was all the same (`cleanExitCause`) */
export type CleanExitCause = { reason: 'crashed', why: string } | { reason: 'rebooted' }

export abstract class HostDriver extends EventEmitter<DriverEvents> implements VmDriver {
  abstract readonly name: DriverName
  protected abstract readonly boots: ReadonlyArray<DriverBoot['kind']>
  /**
   * a start that ended at once says what its console holds in its reason (which any local
   * user reads): a qemu VM's is QEMU's own error, a process VM's is its command's output,
   * which the console's access keeps to root and the vgrid group (bb48: secrets it printed)
   */
  protected readonly outputInReason: boolean = false
  protected readonly components: HostDriverComponents
  protected readonly init: HostDriverInit
  protected readonly runs: RunDirs
  protected readonly recs = new Map<string, VmRecord>()
  private probed?: Promise<ProbeResult>
  protected cgroups?: CgroupLayout
  private timer?: NodeJS.Timeout
  /**
   * What makes this agent's machine-wide names (VM namespaces, cgroups, links) its
   * own: several agents on one machine (the demo, the e2e hosts) may each run a VM of
   * the same id, e.g. while it moves from one to another.
   */
  protected readonly scope: string

  constructor (components: HostDriverComponents, init: HostDriverInit, driver: DriverName) {
    super()
    this.components = components
    this.init = init
    this.scope = dataDirScope(init.dataDir)
    this.runs = new RunDirs(init.dataDir, driver)
    this.timer = setInterval(() => { this.poll() }, init.pollMs ?? 250)
  }

  /** the key a VM's machine-wide names derive from (see `scope`) */
  protected netKey (id: string): string { return `${id}@${this.scope}` }

  // ---- what a concrete driver supplies --------------------------------------------

  /** Driver-specific probe, after cgroups were probed. */
  protected abstract probeDriver (): Promise<ProbeResult>
  /** Checks the spec against this node (files exist...), throwing DriverError('bad-spec'). */
  protected abstract check (spec: DriverVmSpec): void
  protected abstract setupNetwork (spec: DriverVmSpec, slot: number): Promise<VmNetwork>
  protected abstract teardownNetwork (rec: VmRecord): Promise<void>
  /** The VM's argv and the namespace it runs in. */
  protected abstract command (rec: VmRecord, dir: string): { argv: string[], env?: Record<string, string>, netns?: string }
  /** Waits until the started VM is up; throws with the reason when it is not. */
  protected async ready (_rec: VmRecord): Promise<void> {}
  /** Repeat the stop request this often during the grace time (a guest still booting misses it). */
  protected readonly stopRepeatMs?: number
  /** Asks the guest to shut down. */
  protected abstract requestStop (rec: VmRecord): Promise<void>
  protected extraDetail (_rec: VmRecord): Record<string, string> { return {} }
  /** at each poll, for a running VM: whether its guest still runs (qemu: a guest QEMU paused) */
  protected watchGuest (_rec: VmRecord): void {}
  /** The cgroup limits for a spec (a driver adds its own overhead). */
  protected limits (spec: DriverVmSpec): Limits { return { cpus: spec.vcpus, memoryBytes: spec.memoryMiB * 1024 * 1024 } }

  // ---- the interface ---------------------------------------------------------------

  async probe (): Promise<ProbeResult> {
    this.probed ??= (async () => {
      // where its VMs' records go: a file in the way (bb41) failed every start here, three
      // crashes a VM, while placement kept choosing the node; a failed probe keeps it off
      const runDir = runDirProblem(this.init.dataDir, this.name)
      if (runDir != null) return { ok: false, detail: `its run directory ${runDir}` }
      const cg = probeCgroups()
      if (!cg.ok || cg.layout === undefined) return { ok: false, detail: `cgroups: ${cg.detail}` }
      this.cgroups = cg.layout
      const own = await this.probeDriver()
      return { ...own, cgroup: cg.layout.version, detail: `${own.detail}; cgroups: ${cg.detail}` }
    })()
    const r = await this.probed
    // a failed probe is asked again next time: qemu installed or cgroups mounted after the agent started count then
    if (!r.ok) this.probed = undefined
    return r
  }

  async start (raw: DriverVmSpec): Promise<VmInfo> {
    const spec = validateSpec(raw, this.boots)
    this.check(spec)
    const p = await this.probe()
    if (!p.ok || this.cgroups === undefined) throw new DriverError('unsupported', `${this.name} driver cannot run VMs here: ${p.detail}`)
    const old = this.load(spec.id)
    if (old !== undefined && (old.state === 'starting' || old.state === 'running' || old.state === 'stopping')) {
      throw new DriverError('exists', `VM ${spec.id} is already ${old.state} on this node`, 'id')
    }
    // the earlier run's console ends the new one's log (bb34: a crashed run's output, the
    // why of its crash, went with the restart that followed it)
    const before = old === undefined ? Buffer.alloc(0) : earlierConsole(tailBytes(this.runs.console(spec.id), EARLIER_CONSOLE_BYTES), old, spec, this.components.clock.now())
    if (old !== undefined) {
      // the last run's guard, named in the dir that goes now (one a check started beside it goes by its own check)
      this.endGuard(spec.id)
      this.runs.remove(spec.id)
      this.guardsSpawned.delete(spec.id)
    }
    const dir = this.runs.create(spec.id)
    if (before.length > 0) writeFileSync(this.runs.console(spec.id), before)
    const runStart = before.length
    const rec: VmRecord = { version: 1, id: spec.id, driver: this.name, spec, state: 'starting', cgroups: [], cgroupVersion: this.cgroups.version, nodeNetns: this.init.nodeNetns, consoleStart: runStart }
    this.recs.set(spec.id, rec)
    this.save(rec)
    this.emit('state', { id: rec.id, state: 'starting', at: this.components.clock.now() })
    try {
      // nothing this agent knows of runs the VM here (its record is gone, damaged or
      // ended): anything still in its groups is a run it cannot manage, which the new
      // one must not run beside
      const name = vmGroupName(this.name, this.init.dataDir, spec.id)
      const strays = killGroups(groupPaths(this.cgroups, name))
      this.endGuard(spec.id)
      if (strays > 0) this.components.log.warn('killed what still ran in a VM\'s groups without a run record of it before starting it', { vm: spec.id, killed: strays })
      rec.cgroups = createGroups(this.cgroups, name, this.limits(spec))
      this.save(rec)
      if (spec.network !== false) {
        const used = this.allRecords().flatMap(r => r.network === undefined || r.id === rec.id || r.state === 'stopped' || r.state === 'failed' ? [] : [r.network.slot])
        // with the slots of starts still setting up their links (VMs start side by side:
        // two took one /30, the node's address and route twice)
        for (const [id, s] of this.slotsTaken) if (id !== rec.id) used.push(s)
        const slot = freeSlot(this.init.linkRange ?? DEFAULT_LINK_RANGE, used)
        this.slotsTaken.set(rec.id, slot)
        try {
          rec.network = { ...await this.setupNetwork(spec, slot), slot }
        } finally {
          this.slotsTaken.delete(rec.id)
        }
        this.save(rec)
      }
      this.spawnVm(rec, dir)
      await this.joinedGroups(rec)
      await this.ready(rec)
      if (!this.alive(rec)) {
        const status = await this.exitWritten(dir)
        // a command that ran and ended cleanly before it was looked at is a run, not a
        // failed start (bb49: a short job exiting 0 counted as a crash when it was quick
        // enough, and ran three times under --restart on-failure); its exit is recorded
        // by the next poll, as any other, and the restart policy reads a clean exit
        if (status !== '0' || rec.error != null) throw new Error(rec.error ?? endedAtOnce(status, tailFile(this.runs.console(rec.id), 400, runStart), this.outputInReason ? undefined : rec.id))
      }
      this.setState(rec, 'running')
      return this.info(rec)
    } catch (err) {
      const msg = (err as Error).message
      // said once, by the VM manager that asked (local-vms.ts: "VM failed to start"; bb32 read two WARNs)
      this.components.log.debug('VM start failed', { vm: rec.id, driver: this.name, err: msg })
      await this.forceKill(rec)
      // `failed` tells the grid nothing runs (its lease may then go, and the VM start
      // elsewhere): a process that outlives SIGKILL (uninterruptible I/O) is waited for,
      // as a stop's kill is (settle), and reported if it will not go
      for (let i = 0; i < 400 && this.alive(rec); i++) await sleep(25)
      if (this.alive(rec)) this.components.log.error('a VM whose start failed did not go away within 10 s of SIGKILL (uninterruptible I/O?): it can run no more code, but holds what it had open', { vm: rec.id, pid: rec.pid })
      await this.cleanup(rec)
      rec.error = msg
      this.setState(rec, 'failed')
      throw new DriverError('start-failed', `${this.name} VM ${rec.id} did not start: ${msg}`)
    }
  }

  async stop (id: string, graceMs: number): Promise<VmInfo> {
    const rec = this.mustLoad(id)
    if (rec.state === 'stopped' || rec.state === 'failed') return this.info(rec)
    rec.stopRequested = true
    this.setState(rec, 'stopping')
    try {
      await this.requestStop(rec)
    } catch (err) {
      this.components.log.info('graceful stop request failed; killing after the grace time', { vm: id, err: (err as Error).message })
    }
    const until = this.components.clock.now() + graceMs
    let again = this.components.clock.now() + (this.stopRepeatMs ?? Infinity)
    while (this.alive(rec) && this.components.clock.now() < until) {
      await sleep(25)
      if (this.components.clock.now() >= again && this.alive(rec)) {
        again = this.components.clock.now() + (this.stopRepeatMs ?? Infinity)
        await this.requestStop(rec).catch(() => {})
      }
    }
    if (this.alive(rec)) {
      rec.killRequested = true
      this.save(rec)
      await this.forceKill(rec)
    }
    return await this.settle(rec)
  }

  async kill (id: string): Promise<VmInfo> {
    const rec = this.mustLoad(id)
    if (rec.state === 'stopped' || rec.state === 'failed') return this.info(rec)
    rec.killRequested = true
    this.save(rec)
    await this.forceKill(rec)
    return await this.settle(rec)
  }

  async inspect (id: string): Promise<VmInfo | undefined> {
    const rec = this.load(id)
    if (rec === undefined) return undefined
    await this.check1(rec)
    return this.info(rec)
  }

  async list (): Promise<VmInfo[]> {
    const out: VmInfo[] = []
    for (const id of this.runs.ids()) {
      const info = await this.inspect(id)
      if (info !== undefined) out.push(info)
    }
    return out
  }

  async consoleTail (id: string, bytes = 16384): Promise<string> {
    this.mustLoad(id)
    return tailFile(this.runs.console(id), bytes)
  }

  async consoleRead (id: string, bytes: number, since?: ConsoleSince): Promise<ConsoleRead> {
    const rec = this.mustLoad(id)
    const file = this.runs.console(id)
    return readConsole(from => tailBytes(file, bytes, from), rec.startedAt ?? null, since)
  }

  async remove (id: string): Promise<void> {
    const rec = this.mustLoad(id)
    if (rec.state !== 'stopped' && rec.state !== 'failed') throw new DriverError('exists', `VM ${id} is ${rec.state}; stop it first`)
    this.recs.delete(id)
    this.guardsSpawned.delete(id)
    this.endedConsolesTrimmed.delete(id)
    this.runs.remove(id)
  }

  async close (): Promise<void> {
    clearInterval(this.timer)
    this.recs.clear()
  }

  // ---- internals -------------------------------------------------------------------

  private spawnVm (rec: VmRecord, dir: string): void {
    const { argv, env, netns } = this.command(rec, dir)
    const inner = ['/bin/sh', '-c', INNER, 'vgrid-vm', ...argv]
    // the cgroups are joined before `ip netns exec`, which hides /sys/fs/cgroup behind a fresh sysfs
    const outer = netns === undefined ? inner : [ipPath(), 'netns', 'exec', netns, ...inner]
    const con = openSync(this.runs.console(rec.id), 'a')
    try {
      const child = spawn('/bin/sh', ['-c', OUTER, 'vgrid-vm', ...outer], {
        cwd: dir,
        detached: true, // its own session: the agent's death or its terminal's signals do not reach it
        stdio: ['ignore', con, con],
        env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env, VGRID_CGROUPS: rec.cgroups.join(' '), VGRID_EXIT: join(dir, 'exit'), VGRID_GUARD: watchdogPaths(this.init.dataDir).alive, VGRID_GUARD_BEAT: watchdogPaths(this.init.dataDir).beat, VGRID_GUARD_SH: GUARD }
      })
      child.on('error', err => { rec.error = err.message })
      child.on('exit', () => { this.poll() })
      child.unref()
      if (child.pid === undefined) throw new Error('spawn gave no pid')
      const st = procStat(child.pid)
      rec.pid = child.pid
      rec.pidStartTicks = st?.startTicks
      rec.startedAt = st === undefined ? this.components.clock.now() : ticksToMs(st.startTicks)
      rec.bootId = currentBootId()
      this.save(rec)
    } finally {
      closeSync(con)
    }
  }

  /**
   * Waits until the VM's process is in its groups (its first shell joins them before it
   * runs anything): a started VM is held to its limits, and a kill by its groups (the
   * watchdog's, a damaged record's) finds it, even when the agent dies right after.
   */
  private async joinedGroups (rec: VmRecord): Promise<void> {
    const pid = rec.pid
    for (let i = 0; i < 1000; i++) {
      if (pid === undefined || !this.alive(rec)) return // the start's own check says why
      // a CPU group of its own the wrapper leaves again (OUTER): the VM's process joins it before it runs
      if (rec.cgroups.every(g => groupPids([g]).includes(pid) || cpuOnlyGroup(g))) return
      await sleep(10)
    }
    throw new Error(`its process ${String(pid)} did not join its cgroups (${rec.cgroups.join(', ')}) within 10 s`)
  }

  protected alive (rec: VmRecord): boolean {
    return rec.pid !== undefined && rec.pidStartTicks !== undefined && sameProcessAlive(rec.pid, rec.pidStartTicks, rec.bootId)
  }

  private async forceKill (rec: VmRecord): Promise<void> {
    if (this.alive(rec) && rec.pid !== undefined) {
      try { process.kill(-rec.pid, 'SIGKILL') } catch {}
    }
    killGroups(rec.cgroups)
    // its guard is ended by the clean-up, once the VM is gone: until then it may still be needed
    for (let i = 0; i < 200 && this.alive(rec); i++) await sleep(10)
  }

  /** Waits for the exit to be recorded. */
  private async settle (rec: VmRecord): Promise<VmInfo> {
    for (let i = 0; i < 400; i++) {
      await this.check1(rec)
      if (rec.state === 'stopped' || rec.state === 'failed') return this.info(rec)
      await sleep(25)
    }
    throw new DriverError('start-failed', `VM ${rec.id} (pid ${String(rec.pid)}) did not go away within 10 s of SIGKILL`)
  }

  /** link slots chosen by starts that are setting up their network, by VM (not in a record yet) */
  private readonly slotsTaken = new Map<string, number>()

  /** ended VMs whose console log was cut back once since they ended (none is written any more) */
  private readonly endedConsolesTrimmed = new Set<string>()
  /** when the console logs were last looked at for their size (performance.now) */
  private consolesCheckedAt = performance.now()

  private poll (): void {
    if (performance.now() - this.consolesCheckedAt >= CONSOLE_CHECK_MS) {
      this.consolesCheckedAt = performance.now()
      // an ended VM's too, once: what it wrote last may be past the cap (bb41: 50 MB kept until removed)
      for (const rec of this.recs.values()) {
        const ended = rec.state === 'stopped' || rec.state === 'failed'
        if (!ended) this.endedConsolesTrimmed.delete(rec.id)
        else if (this.endedConsolesTrimmed.has(rec.id)) continue
        else this.endedConsolesTrimmed.add(rec.id)
        try {
          const dropped = trimConsole(this.runs.console(rec.id))
          if (dropped > 0) this.components.log.info('a VM\'s console log was cut back to its last MiB', { vm: rec.id, droppedBytes: dropped })
        } catch (err) { this.components.log.warn('could not cut back a VM\'s console log', { vm: rec.id, err: (err as Error).message }) }
      }
    }
    for (const id of this.unsaved) {
      const rec = this.recs.get(id)
      if (rec == null) { this.unsaved.delete(id); continue }
      this.saveLater(rec)
    }
    for (const rec of this.recs.values()) {
      if (rec.state === 'running' || rec.state === 'stopping') {
        this.guardCheck(rec)
        if (rec.state === 'running') this.watchGuest(rec)
        // a timer's promise: a failure here (a cgroup or run file it could not handle) is
        // logged and the check runs again at the next poll, never an unhandled rejection
        this.check1(rec).catch((err: unknown) => { this.components.log.warn('VM exit check failed', { vm: rec.id, driver: this.name, err: (err as Error).message }) })
      }
    }
  }

  private readonly finishing = new Set<string>()
  /** when guardCheck last started a guard for each VM */
  private readonly guardsSpawned = new Map<string, number>()

  /**
   * A running VM whose guard is gone (killed by hand, or by the VM itself: a process VM
   * run as root may kill what shares its session) gets a new one, so it is still ended
   * should its node's agent and watchdog die or stall together. The new guard is not in
   * the VM's session (none can join one) but goes where the first went, ends as it
   * does, and kills the VM's process group as the first did.
   */
  private guardCheck (rec: VmRecord): void {
    if (rec.pid === undefined || !this.alive(rec)) return
    const dir = this.runs.dir(rec.id)
    const named = guardNamed(dir)
    // none yet (it writes the file as it starts), or never one: a VM started by an
    // earlier release, or while its watchdog had no FIFO; given one after a while
    if (named === undefined && (rec.startedAt == null || this.components.clock.now() - rec.startedAt < GUARD_LATE_MS)) return
    if (named?.live === true) return
    const pid = named?.pid ?? 0
    const paths = watchdogPaths(this.init.dataDir)
    let fifo = false
    try { fifo = statSync(paths.alive).isFIFO() } catch {}
    if (!fifo) return
    // only beside a supervisor that holds the FIFO (its `ready` names it once it does):
    // a guard that opens it with no writer reads its end at once and kills the VM, so one
    // started while a restarted agent arms its watchdog would end a VM the agent is about
    // to adopt (or kill itself, saying why). Until then the next poll tries again.
    const supervisor = liveSupervisor(this.init.dataDir)
    let ready: string | undefined
    try { ready = readFileSync(paths.ready, 'utf8').trim() } catch {}
    if (supervisor === undefined || ready !== String(supervisor)) return
    // one started a moment ago may not have written its file yet (a loaded machine): not another
    const spawned = this.guardsSpawned.get(rec.id)
    if (spawned != null && this.components.clock.now() - spawned < GUARD_LATE_MS) return
    this.guardsSpawned.set(rec.id, this.components.clock.now())
    rmSync(join(dir, 'guard'), { force: true })
    try {
      const child = spawn('nice', ['-n', '-20', '/bin/bash', '-c', GUARD, 'vgrid-guard', paths.alive, paths.beat, String(rec.pid), ...rec.cgroups], { cwd: dir, detached: true, stdio: 'ignore' })
      child.on('error', () => {})
      child.unref()
      if (pid === 0) this.components.log.warn('a running VM had no guard 10 s after it started (started by an earlier release, or its guard never came up or is late on a loaded machine; a second one beside it is harmless: either kills the VM): started one, which ends the VM should the agent and the watchdog both die or stall', { vm: rec.id, driver: this.name })
      else this.components.log.warn('a running VM\'s guard was gone (killed?): started a new one, which ends the VM should the agent and the watchdog both die or stall', { vm: rec.id, driver: this.name, was: pid })
    } catch (err) {
      this.components.log.error('a running VM\'s guard is gone and a new one could not be started: the VM is not ended should the agent and the watchdog both die', { vm: rec.id, err: (err as Error).message })
    }
  }

  /**
   * What a run that exited with status 0, unasked, was all the same (undefined: a clean
   * exit); a driver whose VMs can end so says (qemu: a guest whose kernel panicked is a
   * crash, one that rebooted is started again)
   */
  protected cleanExitCause (_rec: VmRecord): CleanExitCause | undefined {
    return undefined
  }

  /** Ends the guard a VM's run dir names, where that pid is still a guard (its end, a start anew, a kill). */
  private endGuard (id: string): void {
    const named = guardNamed(this.runs.dir(id))
    // the file stays (the next run's guard writes its own): a full data disk must not gain room here
    if (named?.live === true) { try { process.kill(named.pid, 'SIGKILL') } catch {} }
  }

  /**
   * The exit status the VM's wrapper wrote on its end ('?' when none): written a moment
   * after the process is gone, so looked for a while (a clean exit read as '?' failed)
   */
  private async exitWritten (dir: string): Promise<string> {
    const until = Date.now() + 1000
    for (;;) {
      try {
        const text = readFileSync(join(dir, 'exit'), 'utf8').trim()
        if (text !== '') return text
      } catch {}
      if (Date.now() >= until) return '?'
      await sleep(20)
    }
  }

  /** Records the exit of a VM whose process is gone. */
  private async check1 (rec: VmRecord): Promise<void> {
    if (rec.state === 'stopped' || rec.state === 'failed' || rec.state === 'starting') return
    if (this.alive(rec) || this.finishing.has(rec.id)) return
    this.finishing.add(rec.id)
    try {
      let status: number | undefined
      let endedAt: number | undefined
      // an empty file is no status: its wrapper could not write it (a full disk), and
      // Number('') is 0, which read a SIGKILL as a clean exit
      try {
        const file = join(this.runs.dir(rec.id), 'exit')
        const text = readFileSync(file, 'utf8').trim()
        if (text !== '') { status = Number(text); endedAt = statSync(file).mtimeMs }
      } catch {}
      const cs = status === undefined || Number.isNaN(status) ? { code: null, signal: rec.killRequested === true ? 'SIGKILL' : null } : decodeShellStatus(status)
      // the watchdog (a separate process) marks the VMs it killed
      let watchdogAt: string | undefined
      try { watchdogAt = readFileSync(join(this.runs.dir(rec.id), WATCHDOG_KILLED), 'utf8') } catch {}
      // when it ended: as its wrapper wrote the status, not when this agent saw it (bb54: an
      // agent down for 20 s made a guest's 12 s run read 27 s, which the quick-run rule reads)
      const seen = this.components.clock.now()
      const at = endedAt != null && endedAt <= seen && (rec.startedAt == null || endedAt >= rec.startedAt) ? Math.floor(endedAt) : seen
      let exit = classifyExit({ ...cs, oomKills: oomKills(rec.cgroups), stopRequested: rec.stopRequested === true, killRequested: rec.killRequested === true || watchdogAt !== undefined, hostRestarted: ranBeforeBoot(rec), now: at })
      const cause = exit.reason === 'exited' ? this.cleanExitCause(rec) : undefined
      if (cause !== undefined) exit = { ...exit, reason: cause.reason }
      if (exit.reason === 'host-restarted') rec.error = 'its host restarted while it ran'
      const byGuard = watchdogAt !== undefined && /\bguard\b/.test(watchdogAt)
      const stalled = byGuard && /\bstalled\b/.test(watchdogAt ?? '')
      if (watchdogAt !== undefined) rec.error = byGuard ? `killed by its guard${watchdogTime(watchdogAt)}: the fencing watchdog's supervisor was ${stalled ? 'stopped or stalled, its agent not there to wake it' : 'gone'}` : `killed by the fencing watchdog${watchdogTime(watchdogAt)}`
      const run = { ...exit, ...(rec.startedAt != null ? { startedAt: rec.startedAt } : {}), ...(cause?.reason === 'crashed' ? { why: cause.why } : {}) }
      rec.exit = watchdogAt !== undefined ? { ...run, watchdogKillAt: watchdogMs(watchdogAt) ?? Date.now(), ...(byGuard ? { watchdogKillBy: 'guard' as const } : {}), ...(stalled ? { guardSawStall: true as const } : {}) } : run
      await this.cleanup(rec)
      const failed = exit.reason === 'crashed' || exit.reason === 'oom-killed' || exit.reason === 'lost'
      if (failed) rec.error = cause?.reason === 'crashed' ? cause.why : exit.reason === 'crashed' ? `crashed (code ${String(exit.code)}${exit.signal != null ? `, ${exit.signal}` : ''})` : exit.reason
      this.setState(rec, failed ? 'failed' : 'stopped')
      this.emit('exit', { id: rec.id, ...rec.exit })
    } finally {
      this.finishing.delete(rec.id)
    }
  }

  private async cleanup (rec: VmRecord): Promise<void> {
    killGroups(rec.cgroups)
    this.endGuard(rec.id)
    await removeGroups(rec.cgroups)
    if (rec.network !== undefined) await this.teardownNetwork(rec)
    rmSync(join(this.runs.dir(rec.id), 'qmp.sock'), { force: true })
  }

  protected setState (rec: VmRecord, state: VmState): void {
    rec.state = state
    // the state is told either way: a record the disk cannot take now (full) is written
    // again at the next poll; an exit left untold stayed `running` in the document for good
    const wasUnsaved = this.unsaved.has(rec.id)
    const err = this.saveLater(rec)
    if (err != null && !wasUnsaved) this.components.log.warn('could not write a VM\'s run record; it is written again at the next poll', { vm: rec.id, driver: this.name, state, err: err.message })
    this.emit('state', { id: rec.id, state, at: this.components.clock.now() })
  }

  /** saves the record now, or at the next poll if the disk does not take it (full): the error then */
  private saveLater (rec: VmRecord): Error | null {
    try { this.save(rec); this.unsaved.delete(rec.id); return null } catch (err) { this.unsaved.add(rec.id); return err as Error }
  }

  /** VMs whose run record the disk did not take at their last change of state */
  private readonly unsaved = new Set<string>()

  protected save (rec: VmRecord): void {
    if (existsSync(this.runs.dir(rec.id))) this.runs.write(rec)
  }

  /** The VM's record: in memory, or read from its run dir (adopting it). */
  protected load (id: string): VmRecord | undefined {
    const mem = this.recs.get(id)
    if (mem !== undefined) return mem
    const rec = this.runs.read(id, this.badRecord)
    if (rec === undefined || rec.driver !== this.name) return undefined
    // a previous agent run died mid-start: what runs is a VM like any other (and if it
    // does not run, check1 records how it ended)
    if (rec.state === 'starting' && rec.pid !== undefined) rec.state = 'running'
    if ((rec.state === 'running' || rec.state === 'stopping') && rec.bootId === undefined && this.alive(rec)) {
      // a run an agent of an earlier release started, found running in this boot: from
      // now on a restart of the machine is told apart from a crash (ranBeforeBoot)
      rec.bootId = currentBootId()
      this.saveLater(rec)
    }
    if (rec.state === 'starting') {
      rec.state = 'failed'
      rec.error = 'the agent stopped while starting it'
      this.saveLater(rec)
      void this.cleanup(rec)
    }
    this.recs.set(id, rec)
    return rec
  }

  /** damaged run records already reported (file -> problem): once each, not at every poll */
  private readonly badRecords = new Map<string, string>()
  private readonly badRecord = (file: string, problem: string): void => {
    // what still runs under a record this agent cannot read can be neither adopted nor
    // told apart from a new run: it is killed by its groups, named by the VM's id, each
    // time the record is read (a new run of the VM never runs beside it)
    const id = basename(dirname(file))
    const killed = this.cgroups === undefined ? 0 : killGroups(groupPaths(this.cgroups, vmGroupName(this.name, this.init.dataDir, id)))
    this.endGuard(id)
    if (this.badRecords.get(file) === problem && killed === 0) return
    if (this.badRecords.size >= 1024) this.badRecords.clear()
    this.badRecords.set(file, problem)
    this.components.log.error('VM run record is damaged: what ran of this VM is killed by its groups (it can be neither adopted nor told apart); the VM starts anew here if it should run here', { file, problem, killed })
  }

  private mustLoad (id: string): VmRecord {
    const rec = this.load(id)
    if (rec === undefined) throw new DriverError('not-found', `no ${this.name} VM ${id} on this node`, 'id')
    return rec
  }

  private allRecords (): VmRecord[] {
    return this.runs.ids().flatMap(id => this.load(id) ?? [])
  }

  protected info (rec: VmRecord): VmInfo {
    const detail: Record<string, string> = { ...rec.detail, ...this.extraDetail(rec) }
    if (rec.cgroupVersion !== undefined) detail.cgroup = rec.cgroupVersion
    if (rec.cgroups.length > 0) detail.cgroups = rec.cgroups.join(' ')
    const cpu = rec.state === 'running' ? readCpuLimit(rec.cgroups) : undefined
    if (cpu !== undefined) detail.cpuLimit = String(cpu)
    const { slot: _slot, ...network } = rec.network ?? { slot: 0 }
    return {
      id: rec.id,
      driver: this.name,
      state: rec.state,
      pid: rec.pid,
      startedAt: rec.startedAt,
      exit: rec.exit,
      error: rec.error,
      consolePath: this.runs.console(rec.id),
      network: rec.network === undefined ? undefined : network as VmNetwork,
      vcpus: rec.spec.vcpus,
      memoryMiB: rec.spec.memoryMiB,
      detail
    }
  }
}

/**
 * ` at <ISO time>` from the watchdog's mark (ms since the epoch, written without a
 * sync: a crash can leave it empty or full of NULs), or nothing when it holds no time.
 */
export function watchdogTime (text: string): string {
  const ms = watchdogMs(text)
  return ms !== undefined ? ` at ${new Date(ms).toISOString()}` : ''
}

/** the time in the watchdog's mark (ms since the epoch; a guard's mark adds " guard", or " guard stalled"), if it holds one */
export function watchdogMs (text: string): number | undefined {
  const t = text.trim().replace(/ guard( stalled)?$/, '')
  const ms = /^\d{1,15}$/.test(t) ? Number(t) : NaN
  return Number.isFinite(ms) && ms > 0 ? ms : undefined
}

/**
 * The guard a VM's run dir names in its `guard` file (undefined: no file) and whether
 * that pid is still a guard (a pid since reused by another process is not)
 */
function guardNamed (dir: string): { pid: number, live: boolean } | undefined {
  let text: string
  try { text = readFileSync(join(dir, 'guard'), 'utf8').trim() } catch { return undefined }
  const pid = /^[0-9]+$/.test(text) ? Number(text) : 0
  let cmd = ''
  try { if (Number.isSafeInteger(pid) && pid > 0) cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8') } catch {}
  return { pid, live: cmd.includes('vgrid-guard') }
}
