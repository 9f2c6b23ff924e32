// What the agent builds for the VM manager on this node: the drivers, with the fencing
// watchdog armed before the first VM starts (or is found running after a restart),
// so an agent that never runs a VM starts no supervisor; and the host probe (cgroup
// version, QEMU accelerator) for the advert, probed again while it failed or found a
// driver missing (qemu installed, cgroups mounted after the agent started). The
// watchdog is a service of its own: a graceful stop disarms it, a crash leaves it to
// kill the node's VMs.
import type { Logger } from '../log.ts'
import type { HealthProblem } from '../api/types.ts'
import type { Clock, Service } from '../service.ts'
import { createDriver, type VmDriver } from './drivers/index.ts'
import { afterProbe, probeHost, type HostProbe } from './host/probe.ts'
import { Watchdog } from './watchdog/index.ts'
import { watchdogTimeoutFor } from './timing.ts'
import { removeFenceRecord, writeFenceRecord } from './fence-record.ts'

export interface NodeRuntimeComponents {
  log: Logger
  clock: Clock
  config: { dataDir: string }
  /** what the host probe found (cgroup version, accelerator), for the advert */
  onProbe?: (p: HostProbe) => void
  /** probes the host (default probeHost; tests give their own) */
  probeHost?: (o: { dataDir: string, now: number }) => Promise<HostProbe>
  /** stops the feeds that kept the previous run's supervisor alive while this agent loaded (watchdog/bridge.ts) */
  stopBridge?: () => void
}

export interface NodeRuntimeInit {
  /** the watchdog kills this node's VMs when the agent has not fed it this long (under the fence timeout) */
  watchdogTimeoutMs: number
  /** probe the host again this long after a probe failed or found a driver missing (default 60 s) */
  reprobeMs?: number
}

/** how often a fence record the disk refused is tried again */
const FENCE_RECORD_RETRY_MS = 5000

export class NodeRuntime implements Service {
  readonly name = 'watchdog'
  readonly drivers: { process: VmDriver, qemu: VmDriver }
  private readonly watchdog: Watchdog
  private armed?: Promise<void>
  /** this run's watchdog has fed the supervisor with its own timeouts, after the bridge stopped */
  private ownFed = false
  private readonly c: NodeRuntimeComponents
  private watchdogTimeoutMs: number
  /** the drivers themselves (listing through `drivers` arms the watchdog) */
  private readonly raw: VmDriver[]
  /** the last probe that succeeded */
  probe?: HostProbe
  private readonly reprobeMs: number
  /** bumped by stop: a probe of an earlier run neither reports nor schedules another */
  private run = 0
  private reprobeTimer?: NodeJS.Timeout
  private lastProbeError?: string
  /** the fence record could not be written (a full disk): tried again every FENCE_RECORD_RETRY_MS */
  private fenceRecordTimer?: NodeJS.Timeout

  constructor (c: NodeRuntimeComponents, init: NodeRuntimeInit) {
    this.c = c
    const dc = { log: c.log, clock: c.clock }
    const di = { dataDir: c.config.dataDir }
    this.watchdogTimeoutMs = init.watchdogTimeoutMs
    this.reprobeMs = init.reprobeMs ?? 60_000
    this.watchdog = new Watchdog({ log: c.log }, { dataDir: c.config.dataDir, timeoutMs: init.watchdogTimeoutMs })
    this.raw = [createDriver('process', dc, di), createDriver('qemu', dc, di)]
    this.drivers = { process: this.armedBefore(this.raw[0]!), qemu: this.armedBefore(this.raw[1]!) }
  }

  /**
   * Whether this run's own watchdog guards the VMs with its usual timeout: armed and fed
   * by this run after the previous run's bridge stopped, or not armed (no VM runs here;
   * one about to start arms it first). A restart's record is said `back` only then
   * (restart-grace.ts): the others then wait the usual fence, not the grace.
   */
  ownWatchdog (): boolean { return this.armed == null || this.ownFed }

  /**
   * Feeds the watchdog only while `loopAgeMs()` (how long ago the VM manager's decision
   * loop last completed a step: DvmmService.loopAgeMs) stays under half its timeout: a
   * loop stuck (on a write that hangs, say) lets the supervisor kill the VMs, as a
   * stalled agent does, since that loop is what fences them.
   */
  feedWhile (loopAgeMs: () => number): void {
    this.watchdog.feedWhile(() => loopAgeMs() < this.watchdogTimeoutMs / 2)
  }

  /**
   * The fence timeout the VM manager runs with changed (activeFenceMs): kept on disk for
   * the next run, and the watchdog's timeout follows (3/5 of it) in its feed, which
   * the supervisor reads.
   */
  setFence (fenceMs: number): void {
    // kept for the next run (fence-record.ts); one that cannot be written (a full disk)
    // is removed rather than left stale, and the watchdog follows all the same
    clearTimeout(this.fenceRecordTimer)
    try {
      writeFenceRecord(this.c.config.dataDir, fenceMs)
    } catch (err) {
      this.c.log.error('could not keep the fence timeout in force for the next run; trying again every 5 s', { ms: fenceMs, error: (err as Error).message })
      removeFenceRecord(this.c.config.dataDir)
      this.retryFenceRecord(fenceMs)
    }
    this.watchdogTimeoutMs = watchdogTimeoutFor(fenceMs)
    this.watchdog.setTimeouts(this.watchdogTimeoutMs, fenceMs)
  }

  /** writes the fence record once the disk takes it (until the fence changes again, or the runtime stops) */
  private retryFenceRecord (fenceMs: number): void {
    const run = this.run
    this.fenceRecordTimer = setTimeout(() => {
      if (run !== this.run) return
      try {
        writeFenceRecord(this.c.config.dataDir, fenceMs)
        this.c.log.info('the fence timeout in force is kept for the next run again', { ms: fenceMs })
      } catch {
        this.retryFenceRecord(fenceMs)
      }
    }, FENCE_RECORD_RETRY_MS)
    this.fenceRecordTimer.unref()
  }

  /**
   * A stop for a restart whose grace every member confirmed (restart-grace.ts): the
   * watchdog's timeout is the grace from now on, and its feed carries the fence the
   * others wait, for the next run (bridge.ts); not kept as this node's fence setting.
   */
  restartGrace (t: { watchdogMs: number, fenceMs: number }): void {
    this.watchdogTimeoutMs = t.watchdogMs
    this.watchdog.setTimeouts(t.watchdogMs, t.fenceMs)
  }

  /** for /v1/status: this node runs without its fencing watchdog (its supervisor died and is being started again) */
  problems (): HealthProblem[] {
    const out: HealthProblem[] = []
    const why = this.watchdog.lost
    if (why != null) out.push({ service: 'dvmm', cause: 'watchdog-lost', message: why })
    // placement passes a node over for the drivers it lacks (its advert): said here, or it looks fine and never gets a VM
    const p = this.probe
    if (p != null && p.drivers.length === 0) {
      const cgroupWhy = p.cgroup.version === 'none' ? `no usable cgroups (${p.cgroup.detail})` : undefined
      // the run directories first (bb42: a file in the way of dvmm/run was sent to "the host probe in the log")
      const reasons = [p.runDirs, cgroupWhy, p.qemu.available ? undefined : p.qemu.detail, process.getuid?.() === 0 ? undefined : 'not run as root'].filter(x => x != null)
      out.push({ service: 'dvmm', cause: 'no-vm-driver', message: `this node can run no VM (no process or qemu driver): ${reasons.join('; ') || 'see the host probe in the log'}` })
    }
    return out
  }

  /** Probes the host in the background (the accelerator probe boots a tiny guest once, then is cached). */
  async start (): Promise<void> {
    void this.probeHost(this.run)
  }

  /** One probe; reports it through onProbe only when the advert's part of it changed. */
  private async probeHost (run: number): Promise<void> {
    let p: HostProbe | undefined
    try {
      p = await (this.c.probeHost ?? probeHost)({ dataDir: this.c.config.dataDir, now: this.c.clock.now() })
      this.lastProbeError = undefined
    } catch (err) {
      // retried every reprobeMs: the same failure is logged once
      const msg = (err as Error).message
      if (run === this.run && msg !== this.lastProbeError) this.c.log.warn('host probe failed', { err: msg })
      this.lastProbeError = msg
    }
    if (run !== this.run) return // stopped meanwhile
    const { report, againInMs } = afterProbe(this.probe, p, this.reprobeMs)
    if (p !== undefined) this.probe = p
    if (p !== undefined && report) {
      this.c.log.info('VM host probed', { cgroup: p.cgroup.version, accel: p.qemu.accel ?? 'none', drivers: p.drivers.join(',') || 'none' })
      if (p.runDirs != null) this.c.log.warn('a VM driver is not offered: its run directory cannot be made', { problem: p.runDirs })
      this.c.onProbe?.(p)
    }
    if (againInMs !== undefined) {
      this.reprobeTimer = setTimeout(() => { if (run === this.run) void this.probeHost(run) }, againInMs)
      this.reprobeTimer.unref()
    }
  }

  /**
   * A graceful stop disarms once no driver lists a VM running, starting or stopping (the
   * VM manager stopped them first); with one left it stops feeding and leaves it armed,
   * to kill what is left; a crash-like stop leaves it armed too.
   */
  async stop (opts: { graceful: boolean, leave?: boolean }): Promise<void> {
    this.run++
    clearTimeout(this.reprobeTimer)
    clearTimeout(this.fenceRecordTimer)
    // a stop for a restart leaves the watchdog armed and fed last now: the next run
    // bridges it (bridge.ts) and adopts the VMs, or it kills them before any takeover
    if (opts.leave === false) {
      // a last feed now, while the loop was sound and peers still hear this node: the next
      // run has the watchdog's whole time from here (the interval's last feed was up to a
      // third of it ago) to be back and adopt the VMs
      // (then no more: the supervisor counts from this feed, whatever the rest of the stop takes)
      // fed before anything is awaited: the stop's own time counts against the watchdog
      if (this.armed != null) this.watchdog.feedIfSound()
      const live = await this.liveVms()
      if (this.armed != null && live.length === 0) {
        // nothing to ride out: the supervisor exits rather than outlive this run for
        // nothing (it ignores SIGTERM); the next run arms one before its first VM starts
        await this.watchdog.stop()
      } else if (this.armed != null) {
        this.watchdog.abandon()
      } else if (live.length === 0) {
        // a supervisor an earlier, killed run left, guarding nothing: the next run would
        // find it and warn that it came too late to feed it
        await this.watchdog.disarmLeftover()
      }
      if (live.length > 0) this.c.log.info('stopping for a restart: the VMs run on under the watchdog', { vms: live })
      else this.c.log.info('stopping for a restart: no VM runs here, the watchdog is disarmed')
    }
    else if (this.armed != null && opts.graceful) {
      const left = await this.liveVms()
      if (left.length === 0) await this.watchdog.stop()
      else {
        // this agent is leaving: no more feeds, so the supervisor kills them within its timeout
        this.watchdog.abandon()
        this.c.log.warn('VMs still run: the watchdog stays armed and kills them', { vms: left })
      }
    } else if (opts.graceful && (await this.liveVms()).length === 0) {
      // a supervisor a killed earlier run left, which this run never took over (none of
      // its VMs ran on): disarmed, or it runs on until the machine restarts
      await this.watchdog.disarmLeftover()
    }
    await Promise.all(this.raw.map(async d => await d.close()))
  }

  /** VMs some driver lists as running, starting or stopping (all of them when a driver cannot say) */
  private async liveVms (): Promise<string[]> {
    const out: string[] = []
    for (const d of this.raw) {
      try {
        for (const v of await d.list()) if (v.state === 'running' || v.state === 'starting' || v.state === 'stopping') out.push(v.id)
      } catch (err) {
        out.push(`(${d.name}: ${(err as Error).message})`)
      }
    }
    return out
  }

  /** `live`: a VM is about to start, which needs a supervisor running now (armed once, it may have died since: killed, OOM) */
  private async arm (live: boolean): Promise<void> {
    this.armed ??= this.watchdog.start().then(() => {
      // from here only this run's feeds, with its own timeouts (the bridge's carried the
      // previous run's, a restart grace's): a feed after the bridge's last, to be sure
      this.c.stopBridge?.()
      this.watchdog.feed()
      this.ownFed = true
    })
    await this.armed
    if (live) await this.watchdog.live()
  }

  /** The driver, with the watchdog armed before a start and as soon as list() finds a VM still running. */
  private armedBefore (driver: VmDriver): VmDriver {
    return new Proxy(driver, {
      get: (target, key, receiver) => {
        if (key === 'start') {
          return async (...args: Parameters<VmDriver['start']>) => { await this.arm(true); return await target.start(...args) }
        }
        if (key === 'list') {
          return async () => {
            const vms = await target.list()
            if (vms.some(v => v.state === 'running' || v.state === 'starting')) await this.arm(false)
            return vms
          }
        }
        const v = Reflect.get(target, key, receiver) as unknown
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
      }
    })
  }
}
