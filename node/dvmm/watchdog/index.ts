// The agent's side of the fencing watchdog: spawns the supervisor process (or finds the
// one a previous agent run left, so a restarted agent adopts it and its VMs), feeds it
// from the agent's own event loop every feedMs while its gate says the agent is sound
// (a stalled loop, or a VM manager stuck in a step, stops feeding, which is the point),
// and disarms it on a clean exit.
import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync } from 'node:fs'
import { writeSmall } from './small-file.ts'
import type { Logger } from '../../log.ts'
import { RepeatedLines } from '../../log-repeats.ts'
import { scriptPath } from '../../paths.ts'
import { currentBootId, procStat, sleep } from '../drivers/common.ts'
import { liveSupervisor, supervisorState } from './supervisor-pid.ts'
import { watchdogPaths } from './paths.ts'
import type { FeedState } from './decide.ts'
import { SleepClock, bootClockMs } from './sleep-clock.ts'

export interface WatchdogComponents {
  log: Logger
  /** the stand-still rule's clock (default: monotonic with the machine's sleeps, sleep-clock.ts) */
  clock?: Pick<SleepClock, 'now'>
}

export interface WatchdogInit {
  dataDir: string
  /** Kill the node's VMs when not fed for this long; keep it well under the fence timeout. */
  timeoutMs: number
  /** the agent's fence timeout, written in each feed for the next run's bridge (bridge.ts) */
  fenceMs?: number
  /** Feed interval; a third of the timeout by default. */
  feedMs?: number
  /** How often the supervisor checks; a tenth of the timeout by default. */
  checkMs?: number
  /** the supervisor exits once it fired and found nothing to kill this long (default 60 s; tests) */
  idleExitMs?: number
}

export interface FiredRecord { at: number, why: string, killed: Array<{ id: string, driver: string, pid?: number }> }

// its own script, so it runs from the sources and from dist/ alike
const SUPERVISOR = scriptPath('node/dvmm/watchdog/supervisor-main')

/** No supervisor runs and none could be started: no VM is started now (not a crash of it) */
export class WatchdogDown extends Error {
  override name = 'WatchdogDown'
}

export class Watchdog {
  readonly name = 'watchdog'
  private readonly log: Logger
  private init: WatchdogInit
  private readonly paths: ReturnType<typeof watchdogPaths>
  private timer?: NodeJS.Timeout
  private seq = 0
  private gate: () => boolean = () => true
  private withheld = false
  /** for its stand-still rule: monotonic, with the machine's sleeps counted (sleep-clock.ts) */
  private readonly clock: Pick<SleepClock, 'now'>
  pid?: number

  constructor (components: WatchdogComponents, init: WatchdogInit) {
    if (!(init.timeoutMs > 0)) throw new Error(`watchdog timeoutMs must be positive, got ${init.timeoutMs}`)
    this.log = components.log
    this.clock = components.clock ?? new SleepClock()
    this.init = init
    this.paths = watchdogPaths(init.dataDir)
  }

  /** The supervisor's pid if one runs for this data dir (checked against its start time). */
  running (): number | undefined {
    return liveSupervisor(this.init.dataDir)
  }

  async start (): Promise<void> {
    mkdirSync(this.paths.dir, { recursive: true })
    this.feed() // before the supervisor reads: a fresh feed, not a stale disarm
    const state = supervisorState(this.init.dataDir)
    // one that cannot be looked for (no descriptor left) is not started beside: this start fails, and says why
    if (state !== 'gone' && 'unknown' in state) throw new WatchdogDown(`cannot check for the fencing watchdog's supervisor (${state.unknown})`)
    const existing = state === 'gone' ? undefined : state.pid
    if (existing !== undefined) {
      this.pid = existing
      this.log.info('watchdog adopted from a previous agent run', { pid: existing })
    } else {
      await this.spawnSupervisor()
      this.log.info('watchdog started', { pid: this.pid, timeoutMs: this.init.timeoutMs })
    }
    // fed again now that it runs: a spawn slow on a loaded machine is no stall of this agent (feedIfSound)
    this.feed()
    this.timer = setInterval(() => { this.feedIfSound() }, this.init.feedMs ?? Math.max(10, Math.floor(this.init.timeoutMs / 3)))
  }

  private async spawnSupervisor (): Promise<void> {
    // emptied rather than removed: on a full disk the new supervisor writes its pid in place
    try { writeSmall(this.paths.ready, '') } catch { rmSync(this.paths.ready, { force: true }) }
    const checkMs = this.init.checkMs ?? Math.max(20, Math.floor(this.init.timeoutMs / 10))
    const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', SUPERVISOR, this.init.dataDir, String(this.init.timeoutMs), String(checkMs), ...(this.init.idleExitMs != null ? [String(this.init.idleExitMs)] : [])], {
      detached: true, // its own session: the agent's death or its terminal's signals do not reach it
      stdio: 'ignore'
    })
    // a spawn that fails (EMFILE: a flood of API connections took every descriptor) says
    // so in an 'error' event, which unheard ended the agent (bb24)
    const spawned = new Promise<void>((resolve, reject) => { child.once('spawn', resolve); child.once('error', reject) })
    child.on('error', () => {})
    child.unref()
    await spawned.catch((err: Error) => { throw new Error(`watchdog: the supervisor could not be started: ${err.message}`) })
    if (child.pid === undefined) throw new Error('watchdog: spawn gave no pid')
    const st = procStat(child.pid)
    try {
      // its start time is what tells it from a later process of its pid: without it the record names no one
      if (st == null) throw new Error(`its /proc/${child.pid}/stat could not be read`)
      writeSmall(this.paths.pid, JSON.stringify({ pid: child.pid, startTicks: st.startTicks, bootId: currentBootId() }))
    } catch (err) {
      // unrecorded, it would run unknown beside the next one started
      try { process.kill(child.pid, 'SIGKILL') } catch {}
      throw new Error(`watchdog: the supervisor's pid could not be recorded (${(err as Error).message}): stopped it`)
    }
    this.pid = child.pid
    for (let i = 0; ; i++) {
      try { if (readFileSync(this.paths.ready, 'utf8').trim() === String(child.pid)) break } catch {}
      if (i > 400) throw new Error('watchdog: the supervisor did not come up within 20 s')
      await sleep(50)
    }
  }

  /**
   * Why the node runs without its watchdog, while it does (its supervisor died: killed,
   * OOM): a crash of this agent would then leave its VMs running beside their takeover.
   */
  get lost (): string | undefined { return this.lostWhy }
  private lostWhy?: string
  private respawning?: Promise<void>
  /** why the last start of a new supervisor failed, until one starts */
  private respawnFailed?: string
  private readonly repeats = new RepeatedLines()
  /** why the last check could not look (no descriptor left), said once until it can */
  private blind?: string

  /** Checked with each feed: a supervisor that is gone is started again at once. */
  private checkSupervisor (): void {
    if (this.timer == null) return
    const state = supervisorState(this.init.dataDir)
    // no descriptor left to read its record or /proc with (a flood of connections): the
    // supervisor is not known gone, and a second one would run beside it (bb24)
    if (state !== 'gone' && 'unknown' in state) {
      if (this.blind == null) this.log.warn('cannot check on the watchdog supervisor: this agent has no file descriptor left; not starting another', { pid: this.pid, error: state.unknown })
      this.blind = state.unknown
      return
    }
    this.blind = undefined
    const live = state === 'gone' ? undefined : state.pid
    // a supervisor stopped (SIGSTOP, a debugger) fires nothing: this agent's death would
    // leave its VMs running beside their takeover. It is let go on at once.
    if (live !== undefined && procStat(live)?.state === 'T') {
      try { process.kill(live, 'SIGCONT') } catch {}
      this.log.error('the watchdog supervisor was stopped (SIGSTOP?): continued it; while stopped it fences nothing', { pid: live })
    }
    // one found running that this agent's start did not see come up (it came up after the
    // start gave up on it): the node runs with its watchdog again
    if (live !== undefined && this.respawning == null && (this.lostWhy != null || this.respawnFailed != null)) {
      this.lostWhy = undefined
      this.respawnFailed = undefined
      this.pid = live
      this.log.info('watchdog running again', { pid: live })
    }
    if (this.respawning != null || live !== undefined) return
    const was = this.pid
    // a start that keeps failing is retried at every feed: said once a minute, not each time
    if (this.respawnFailed == null) {
      this.lostWhy = `the fencing watchdog's supervisor (pid ${was ?? '?'}) is gone; starting a new one`
      this.log.error('the watchdog supervisor is gone (killed?): starting a new one; until it runs, a crash of this agent would leave its VMs running', { pid: was })
    }
    this.respawning = this.spawnSupervisor().then(() => {
      this.lostWhy = undefined
      this.respawnFailed = undefined
      this.log.info('watchdog started again', { pid: this.pid, was })
    }, (err: Error) => {
      this.lostWhy = `the fencing watchdog's supervisor (pid ${was ?? '?'}) is gone and could not be started again (${err.message}); retrying`
      this.respawnFailed = err.message
      this.repeats.log(this.log, 'error', `respawn ${was ?? '?'}`, 'the watchdog supervisor could not be started again; retrying at every feed', { error: err.message })
    }).finally(() => { this.respawning = undefined })
  }

  /**
   * Resolves once a supervisor runs, started again now if it is gone (its guards killed
   * their VMs as it went): a VM started without one gets a guard that finds no
   * supervisor and kills it at once, which the crash rule would count (a tester's one
   * SIGKILL of the supervisor left a VM failed after three such starts in half a second).
   * Throws when none can be started.
   */
  async live (): Promise<void> {
    if (this.timer == null) return
    if (this.running() === undefined) this.checkSupervisor()
    await this.respawning
    if (this.running() === undefined) throw new WatchdogDown(this.blind != null ? `cannot check on the fencing watchdog's supervisor (${this.blind}): no VM starts until it can` : this.lostWhy ?? 'the fencing watchdog\'s supervisor is gone')
  }

  /** Feeds from now on only while `sound()` holds (the VM manager's loop keeps completing steps). */
  feedWhile (sound: () => boolean): void {
    this.gate = sound
  }

  private gateOk (): boolean {
    try { return this.gate() } catch { return false }
  }

  /** A feed if the VM manager's loop is sound (the interval's; a stop for a restart feeds once more with it) */
  feedIfSound (): void {
    // this agent stood still past the watchdog's timeout (stopped, or its whole machine
    // or service frozen with its supervisor): the others may have taken its VMs over, so
    // it must not feed now, before a supervisor frozen with it has seen the feed missing
    // and fired. It holds its feed for a timeout more (the supervisor fires meanwhile).
    const now = this.clock.now()
    if (this.fedAt > 0 && now - this.fedAt > this.init.timeoutMs && now >= this.holdUntil) {
      this.holdUntil = now + this.init.timeoutMs
      this.log.warn('this agent stood still longer than its watchdog\'s timeout: not feeding it until it has fired (its VMs are killed; those whose leases are still this node\'s start again)', { stalledMs: Math.round(now - this.fedAt), pid: this.pid })
      // the feeds after the hold count from its end
      this.fedAt = this.holdUntil
    }
    if (now < this.holdUntil) { this.checkSupervisor(); return }
    const ok = this.gateOk()
    if (ok !== !this.withheld) this.log[ok ? 'info' : 'warn'](ok ? 'watchdog fed again' : 'watchdog not fed: the VM manager\'s loop is stuck', { pid: this.pid })
    this.withheld = !ok
    if (ok) this.feed()
    this.checkSupervisor()
  }

  /** when this agent last fed (this.clock; 0: never) */
  private fedAt = 0
  /** no feed before this (after a stall past the timeout) */
  private holdUntil = 0

  /**
   * New timeouts (the agent's fence timeout in force changed): in the feed at once,
   * which the supervisor reads on its next check; the feed interval follows.
   */
  setTimeouts (timeoutMs: number, fenceMs: number): void {
    if (!(timeoutMs > 0)) throw new Error(`watchdog timeoutMs must be positive, got ${timeoutMs}`)
    const changed = timeoutMs !== this.init.timeoutMs
    this.init = { ...this.init, timeoutMs, fenceMs }
    if (this.timer == null) return
    // a feed only while sound (feedWhile): a stuck decision loop gets the new timeouts
    // written all the same, as the last feed with them (the supervisor counts a change
    // of anything but the timeouts as a feed: decide.ts feedKey), so a shorter one holds
    if (this.gateOk()) this.feed()
    else this.write(this.state())
    if (!changed) return
    clearInterval(this.timer)
    this.timer = setInterval(() => { this.feedIfSound() }, this.init.feedMs ?? Math.max(10, Math.floor(this.init.timeoutMs / 3)))
  }

  /** One feed (the interval does this; exposed for tests and for a loop that wants to feed now). */
  feed (): void {
    this.seq++
    this.fedAt = this.clock.now()
    this.write(this.state())
  }

  private state (): FeedState {
    const bootMs = bootClockMs()
    const boot = currentBootId()
    return { seq: this.seq, pid: process.pid, timeoutMs: this.init.timeoutMs, ...(this.init.fenceMs != null ? { fenceMs: this.init.fenceMs } : {}), ...(bootMs != null && boot != null ? { bootMs: Math.round(bootMs), boot } : {}) }
  }

  /** Stops feeding and leaves it armed: the supervisor kills what runs once its timeout passes. */
  abandon (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** Stops feeding and disarms: the supervisor exits and kills nothing. */
  async stop (): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.respawning // a supervisor started meanwhile reads the disarm below and exits
    // with the fence timeout in force: the next run starts no longer than it (fence-record.ts)
    this.seq++
    this.write({ ...this.state(), disarmed: true })
    for (let i = 0; i < 100 && this.pid !== undefined && this.running() !== undefined; i++) await sleep(20)
    if (this.running() !== undefined) this.log.warn('watchdog still runs after disarm', { pid: this.pid })
  }

  /**
   * Disarms the supervisor a previous agent run left, when this run never took it over
   * (it found no VM of that run still running): nothing feeds it any more, and it would
   * otherwise run until the machine restarts. Whether there was one.
   */
  async disarmLeftover (): Promise<boolean> {
    const pid = this.running()
    if (pid === undefined) return false
    this.pid = pid
    await this.stop()
    this.log.info('watchdog of a previous agent run disarmed: no VM of it runs', { pid })
    return true
  }

  /** Every time the watchdog fired, oldest first. */
  fired (): FiredRecord[] {
    try {
      return readFileSync(this.paths.fired, 'utf8').split('\n').filter(l => l !== '').flatMap(l => {
        try { return [JSON.parse(l) as FiredRecord] } catch { return [] }
      })
    } catch {
      return []
    }
  }

  /** the last feed was written in place (the data dir's disk is full): said once when it starts */
  private inPlace = false

  private write (state: object): void {
    try {
      const how = writeSmall(this.paths.feed, JSON.stringify(state))
      if (how === 'in-place' && !this.inPlace) this.log.warn('the data dir\'s disk is full: the watchdog is fed in place, in the block its feed file has')
      this.inPlace = how === 'in-place'
    } catch (err) {
      this.log.warn('watchdog feed failed', { err: (err as Error).message })
    }
  }
}

