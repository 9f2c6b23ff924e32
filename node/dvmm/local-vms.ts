// The VMs this node runs. The decision loop (service.ts) says which VMs start, stop or
// die here; this carries that out on the drivers and reports crashes back to it, and is
// the glue to the rest of the node: each VM started with its overlay address, terminal
// names and volumes; its interface handed to the LCM, which routes its overlay address
// there; its terminal names told anew when links change; its console (console.ts). A
// VM stopped on request keeps its lease here, `stopped`, and its ended run, whose
// console is still served until the lease is not this node's.
import type { Lease, Reader, Vm, Writer } from '../../crdt/index.ts'
import type { MemberTable } from '../../protocol/membership.ts'
import { onExit, restartDelayMs, QUICK_RUN_MS } from '../../crdt/placement/index.ts'
import type { Logger } from '../log.ts'
import type { RequestHost } from '../p2p/request.ts'
import type { Clock } from '../service.ts'
import { GUEST_STUCK, guestHeld, type VmDriver, type VmExit, type VmInfo, type VmOverlay } from './drivers/types.ts'
import { appendToLease, leaseReason, logged, readLog, sameVm, type History } from './history.ts'
import { docStamp, driverSpec, fencedKillReason, killIfLive, listedLive, movesOn, parkedLease } from './run-steps.ts'
import { leftBehind } from './left-behind.ts'
import type { DvmmMetrics } from './metrics.ts'
import type { DocView } from './view.ts'
import { bootDigest } from './boot-fields.ts'
import { attachVolumes, disksReadable, DiskWait, NothingToBoot, type VolumeAccess } from './vm-disks.ts'
import { VmConsoles, type ConsoleAnswer } from './console.ts'
import type { ConsoleSince } from './drivers/console-read.ts'
import { WatchdogDown } from './watchdog/index.ts'

/** how long a VM waits before another start while this node's watchdog cannot be started */
const WATCHDOG_DOWN_PAUSE_MS = 2000
/** how long a VM waits before its disks are looked at again while one cannot be read (vm-disks.ts disksReadable) */
const DISK_WAIT_PAUSE_MS = 2000
/** how long a kill of a run whose lease moved on waits to go into that lease's log (logMovedKill) */
const MOVED_KILL_KEEP_MS = 120_000

/** the connection manager, where the grid has an overlay */
export interface VmNetworkHooks {
  overlayOf: (vm: string) => VmOverlay | null
  /** a VM of this node started, was adopted or went: its interface appeared or vanished */
  interfacesChanged: () => void
  /** why this node's overlay is down (null: up); absent: not known */
  overlayDown?: () => string | null
  /** whether the tunnel from here to that node carries nothing for a link that needs it (tunnel-health.ts); absent: not known */
  tunnelDown?: (node: string) => boolean
}

export interface LocalVmsComponents {
  peerId: string
  log: Logger
  clock: Clock
  config: { name: string }
  state: {
    read: () => Reader
    write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T>
  }
  /** the drivers this node runs VMs with, by the spec's driver name */
  drivers: Partial<Record<Vm['spec']['driver'], VmDriver>>
  network?: VmNetworkHooks
  /** libp2p, to answer and ask for consoles of VMs on other nodes */
  host?: RequestHost
  /** who is alive, for a console asked of another node (absent: every node is asked) */
  membership?: { readonly members: MemberTable }
  /** the volume store on this node: where a volume is served over NBD (null: no such volume) */
  volumes?: VolumeAccess
  metrics: Pick<DvmmMetrics, 'starts' | 'kills' | 'crashes'>
  history: Pick<History, 'add'>
  /** queues a lease update for the decision loop's next write (`key`: a newer one replaces it; `written`: called once it is written) */
  enqueue: (fn: (w: Writer) => void, opts?: { key?: string, written?: () => void }) => void
  /** asks the decision loop for a step soon */
  schedule: () => void
}

export interface LocalVmsInit {
  stopGraceMs: number
}

/** a start called off while it ran (see LocalVms.aborted) */
class StartAborted extends Error { override message = 'start called off' }

export class LocalVms {
  private readonly c: LocalVmsComponents
  private readonly init: LocalVmsInit
  private readonly running = new Set<string>()
  /** kills of runs here whose leases moved on, until the lease's log has them (logMovedKill) */
  private readonly movedKills = new Map<string, { at: number, detail: string, startedAt: number | undefined, until: number }>()
  /** starts in flight (the decision step leaves these VMs be; a graceful stop waits for them) */
  private readonly starting = new Map<string, Promise<void>>()
  /** stops and kills in flight: their exits are no crashes */
  private readonly ending = new Map<string, { how: 'stop' | 'kill', done: Promise<void> }>()
  /** a kill asked for while the VM was starting: the start ends it */
  private readonly killAsked = new Set<string>()
  /**
   * VMs that exited for good whose lease update is not written yet; with why, those the
   * crash rule (or their policy) leaves stopped, for this node's own view until written
   */
  private readonly unwritten = new Map<string, string | undefined>()
  /**
   * Crash times decided but not yet written (the document refuses writes: a full disk),
   * by VM: the crash rule and the restart's pause count them, so a VM restarted under its
   * own lease meanwhile still stops at the third crash
   */
  private readonly crashesUnwritten = new Map<string, number[]>()
  /** quick clean runs in a row under `always`, by VM (restart.ts QUICK_RUN_MS): this node's own count */
  private readonly quickRuns = new Map<string, number>()
  /** when (monotonic ms) a VM's restart after quick runs may begin, by VM (onExit's delayMs) */
  private readonly restartNotBefore = new Map<string, number>()
  /** starts waiting out their pause before a restart, by VM: ending one wakes it early */
  private readonly pauses = new Map<string, () => void>()
  /** when (docStamp) each pause began: a `vm start` asked after it ends it (the VM's startAsked) */
  private readonly pausedSince = new Map<string, number>()
  /** consoles, here and of VMs elsewhere, and the ended runs kept for them */
  private readonly consoles: VmConsoles
  /** a graceful stop of the service began: a start that completes now is killed */
  private closing = false
  /** their interfaces on this node (the connection manager routes their overlay addresses there), and the driver of each */
  private readonly ifaces = new Map<string, { hostIf: string, linkAddress: string, driver: VmDriver, run: string }>()
  private readonly onDriverExit = (e: { id: string } & VmExit): void => { this.exited(e) }
  // a guest its driver finds paused (QEMU, after a disk error) runs no more though its
  // process does: the lease says why, not a plain `running`, until it goes on
  private readonly onPaused = (e: { id: string, why: string | null }): void => {
    const l0 = (id: string): string | null | undefined => this.c.state.read().get('leases', id)?.value.reason
    if (e.why != null) {
      this.c.log.warn('a VM\'s guest is paused', { vm: e.id, why: e.why })
      this.updateLease(e.id, { reason: e.why }, l => l.status === 'running')
    } else {
      this.c.log.info('a VM\'s guest runs again', { vm: e.id })
      this.updateLease(e.id, { reason: l0(e.id)?.startsWith(GUEST_STUCK) === true ? 'runs again: its QEMU answers on its control socket again' : 'runs again: QEMU had paused it after a disk error, and its disk took the write since' }, l => l.status === 'running' && guestHeld(l.reason))
    }
  }

  constructor (components: LocalVmsComponents, init: LocalVmsInit) {
    this.c = components
    this.init = init
    this.consoles = new VmConsoles({ ...components, active: vm => this.live.has(vm) || this.busy.has(vm) })
  }

  /** VMs this node's drivers run (started or adopted) */
  get runs (): ReadonlySet<string> { return this.running }
  /** why a VM that ended here is left stopped, while the lease's update is not written (the document refuses writes: a full disk) */
  unwrittenEnd (vm: string): string | undefined { return this.unwritten.get(vm) }
  /** VMs being started, stopped or killed, or whose exit is not written yet: the decision step leaves them be (a fenced one kills them) */
  get busy (): ReadonlySet<string> { return new Set([...this.starting.keys(), ...this.ending.keys(), ...this.unwritten.keys()]) }
  /** VMs whose process may run here: running, starting or being stopped */
  get live (): ReadonlySet<string> { return new Set([...this.running, ...this.starting.keys(), ...this.ending.keys()]) }

  /**
   * Takes over what a previous run of this agent left (leftBehind): VMs still running
   * are adopted (if the lease is another node's, the step kills them), exits nobody
   * wrote go through the crash rule; then answers console requests.
   */
  async start (): Promise<void> {
    const killedWhileDown: string[] = []
    /** VMs their guards killed (the supervisor gone or stalled), to start again */
    const killedByGuards: string[] = []
    /** VMs its watchdog killed that run elsewhere now (their leases moved): said, not started */
    const killedAndMoved: string[] = []
    const stopsUnderWay: Array<{ vm: string, why: string }> = []
    for (const d of this.drivers()) {
      // list() records and emits exits it finds: exited() skips them (not running), the left ones are judged here
      d.on('exit', this.onDriverExit)
      d.on('paused', this.onPaused)
      for (const vm of await d.list()) {
        // read after the await: a reader taken before it is stale once a peer's change arrived
        const r = this.c.state.read()
        const lease = r.get('leases', vm.id)?.value
        // a run of a former VM of its name (removed while this agent was away, made again
        // since): its lease is not the new VM's, so it is neither restarted nor counted as
        // the new VM's crash; a live one is stopped by the step (decide.ts)
        const spec = r.get('vms', vm.id)?.value
        const act = leftBehind(vm, lease != null && spec != null && !sameVm(lease.made, spec.created) ? undefined : lease, this.c.peerId)
        if (act.do === 'adopt' || act.do === 'stop') {
          this.running.add(vm.id)
          this.noteInterface(vm, d)
          // logged when the guest started, not now (bb36: the adoption's time read as its
          // start); never before the lease's last event (a start time from /proc/stat runs
          // up to a second early: rv41 saw started before placed); the latest, not the last
          // appended (another node's events may carry older stamps: rv42)
          const startedAt = vm.startedAt == null ? undefined : Math.max(vm.startedAt, ...readLog(lease?.log).events.map(e => e.at))
          if (act.do === 'adopt' && act.running != null) this.updateLease(vm.id, { status: 'running', reason: act.running }, l => l.status == null || l.status === 'claimed' || l.status === 'starting', startedAt)
          if (act.do === 'stop') stopsUnderWay.push({ vm: vm.id, why: act.why })
        } else if (act.do === 'exit') {
          this.c.log.info('a VM ended while the agent was down', { vm: vm.id, reason: act.exit.reason })
          this.recordExit(vm.id, act.exit)
        } else if (act.do === 'restart') {
          if (vm.exit?.watchdogKillBy === 'guard') killedByGuards.push(vm.id)
          else killedWhileDown.push(vm.id)
          // logged when the watchdog killed it, not now
          this.updateLease(vm.id, { status: 'starting', reason: act.why }, () => true, vm.exit?.watchdogKillAt)
        } else if (vm.exit?.reason === 'killed' && (vm.exit.watchdogKillAt != null || vm.error?.startsWith('killed by the fencing watchdog') === true)) {
          killedAndMoved.push(vm.id)
          // no lease of this node's says so: this node's history does, and the lease's log (below)
          const detail = `${vm.error} while the agent was down or still loading; its lease has moved on since`
          const at = vm.exit.watchdogKillAt ?? vm.exit.at
          this.c.history.add(vm.id, { event: 'killed', node: this.c.config.name, detail }, at)
          this.logMovedKill(vm.id, at, detail, vm.startedAt)
        }
        if (act.do !== 'adopt' && act.do !== 'stop') this.consoles.keep(vm.id)
      }
    }
    // busy from here (act marks them ending at once): the step leaves them be until stopped
    for (const s of stopsUnderWay) void this.act(s.vm, 'stop', s.why)
    if (this.ifaces.size > 0) this.c.network?.interfacesChanged()
    if (this.running.size > 0) this.c.log.info('found VMs of a previous run', { vms: [...this.running] })
    // the agent came back later than the fence timeout: its VMs were killed, and run again now
    if (killedAndMoved.length > 0) this.c.log.warn('the fencing watchdog (or the VMs\' guards, its supervisor gone) killed VMs while the agent was down; their leases have moved: they run elsewhere now (or wait for a node), not here', { vms: killedAndMoved })
    // named apart: those stopped or removed meanwhile, which are not started again
    const split = (ids: string[]): Record<string, string[]> => {
      const r = this.c.state.read()
      const again = ids.filter(id => r.get('vms', id)?.value.desired === 'running')
      const not = ids.filter(id => !again.includes(id))
      return { vms: again, ...(not.length > 0 ? { notStarted: not } : {}) }
    }
    if (killedWhileDown.length > 0) this.c.log.warn('the fencing watchdog killed VMs while the agent was down (it was away longer than the watchdog\'s timeout, counted from the previous run\'s last feed); starting them again (notStarted: stopped or removed meanwhile)', split(killedWhileDown))
    if (killedByGuards.length > 0) this.c.log.warn('the VMs\' guards killed them while the agent was down: the fencing watchdog\'s supervisor was gone or stalled (killed with the agent?); starting them again (notStarted: stopped or removed meanwhile)', split(killedByGuards))
    await this.consoles.serve()
  }

  /** Leaves the VMs as they are (stopAll stops them). */
  async stop (): Promise<void> {
    for (const d of this.drivers()) { d.off('exit', this.onDriverExit); d.off('paused', this.onPaused) }
    await this.consoles.unserve()
  }

  /**
   * Stops every VM on this node, gracefully: waits for the starts in flight (one that
   * completes from now on is killed), then stops every VM a driver lists as running or
   * starting, not only those this run knows of. Returns the VMs some driver still lists
   * as running, starting or stopping: their leases must stay.
   */
  async stopAll (why: string): Promise<Set<string>> {
    this.closing = true
    for (const wake of [...this.pauses.values()]) wake()
    await Promise.all([...this.starting.values()])
    for (const d of this.drivers()) {
      for (const id of await listedLive(d).catch(() => [])) this.running.add(id)
    }
    await Promise.all([...this.running].map(async vm => await this.act(vm, 'stop', why)))
    const left = new Set<string>()
    for (const d of this.drivers()) {
      try {
        for (const id of await listedLive(d)) left.add(id)
      } catch (err) {
        // unknown: every VM this run knew of stays
        this.c.log.warn('could not list the VMs after stopping them', { driver: d.name, err: (err as Error).message })
        for (const vm of this.running) left.add(vm)
      }
    }
    return left
  }

  /** the lease as its write finds it, while it is this node's (and `onlyIf` holds), with the transition in its log at `when` (wall ms; default now) */
  /**
   * A kill of a VM whose lease moved on (its run here killed by the watchdog while this
   * agent was down or stalled) goes into the lease's log too, so every node's history
   * shows it, not this node's only. Kept here until the lease is another node's and its
   * log has it: a resumed agent's document may still hold its own lease when it finds
   * the kill, and a takeover then carries on the log as it was before. An appended
   * event merges with the holder's own (the log takes appends from two nodes at once:
   * Writer.update); a contested lease is left alone (an update of one is a whole put,
   * here of another node's lease), as is the lease of a VM made after the killed run
   * started (a former VM of the name ran here).
   */
  private logMovedKill (vm: string, at: number, detail: string, startedAt: number | undefined): void {
    this.movedKills.set(vm, { at: Math.floor(at), detail, startedAt, until: Date.now() + MOVED_KILL_KEEP_MS })
    this.c.schedule()
  }

  /** the moved kills whose lease is now another node's and uncontested, and lacks them: appended (each step, until the log has them) */
  private flushMovedKills (doc: DocView): void {
    for (const [vm, k] of this.movedKills) {
      const l = doc.leases.get(vm)
      const spec = doc.vms.get(vm)
      if (Date.now() > k.until || l == null || spec == null || (k.startedAt != null && spec.created != null && k.startedAt < spec.created)) {
        if (Date.now() > k.until) this.c.log.info('the kill of a run whose lease moved on was not written into its history: the lease stayed contested for as long as it was kept', { vm, keptMs: MOVED_KILL_KEEP_MS })
        this.movedKills.delete(vm)
        continue
      }
      // first: while contested, the winner read may be this node's own old claim, whose log has the kill already (rv43's reorder lost it)
      if (l.claims.length > 1 || l.winner.holder === this.c.peerId) continue
      if (readLog(l.winner.log).events.some(e => e.event === 'killed' && e.node === this.c.peerId && e.at === k.at)) { this.movedKills.delete(vm); continue }
      this.c.enqueue(w => {
        appendToLease(w, vm, () => ({ at: k.at, event: 'killed', node: this.c.peerId, name: this.c.config.name, detail: k.detail }),
          l => l.holder !== this.c.peerId && !readLog(l.log).events.some(e => e.event === 'killed' && e.node === this.c.peerId && e.at === k.at))
      }, { key: `moved-kill:${vm}` })
    }
  }

  private updateLease (vm: string, patch: Partial<Lease>, onlyIf: (l: Lease) => boolean = () => true, when?: number): void {
    const at = when != null ? Math.floor(when) : docStamp(this.c.clock)
    this.c.enqueue(w => {
      const l = w.current('leases', vm)
      if (l?.holder !== this.c.peerId || !onlyIf(l)) return
      w.update('leases', vm, logged(l, patch, at, this.c.config.name))
    })
  }

  startVm (id: string, doc: DocView): Promise<void> {
    const vm = doc.vms.get(id)
    if (vm == null || this.closing || this.busy.has(id)) return Promise.resolve()
    const driver = this.c.drivers[vm.spec.driver]
    if (driver == null) {
      this.updateLease(id, { status: 'failed', reason: `driver ${vm.spec.driver} is not available on this node` })
      return Promise.resolve()
    }
    const done = this.runStart(vm, driver, doc).finally(() => {
      this.starting.delete(id)
      this.killAsked.delete(id)
      this.c.schedule()
    })
    this.starting.set(id, done)
    return done
  }

  /** the start was called off while it ran: a kill (fenced, lost lease) or a graceful stop of the service */
  private aborted (id: string): boolean { return this.closing || this.killAsked.has(id) }

  private async runStart (vm: Vm, driver: VmDriver, doc: DocView): Promise<void> {
    const id = vm.id
    // after a crash, a pause first (the crash rule's: restartDelayMs), busy meanwhile
    const quickWait = Math.max(0, (this.restartNotBefore.get(id) ?? 0) - performance.now())
    this.restartNotBefore.delete(id)
    const pause = Math.max(quickWait, restartDelayMs(this.crashesUnwritten.get(id) ?? doc.leases.get(id)?.winner.crashes ?? [], docStamp(this.c.clock)))
    if (pause > 0) {
      // ended early by a stop, kill, move or the service's stop (rv45: a leave waited out
      // a 5-minute pause, and was SIGKILLed by its service manager before it was written)
      await new Promise<void>(resolve => {
        const done = (): void => { clearTimeout(timer); this.pauses.delete(id); this.pausedSince.delete(id); resolve() }
        const timer = setTimeout(done, pause)
        this.pauses.set(id, done)
        this.pausedSince.set(id, docStamp(this.c.clock))
      })
      if (this.aborted(id)) return
      // stopped or removed meanwhile, or its lease gone elsewhere: no start (bb30: a
      // `vm stop` during the pause ran the command once more); the next step writes the stop
      const r = this.c.state.read()
      if (r.get('vms', id)?.value.desired !== 'running' || r.get('leases', id)?.value.holder !== this.c.peerId || r.get('roll', this.c.peerId)?.value.draining === true) return
    }
    try {
      // not while a disk has objects no live node holds the newest copy of: the guest would
      // boot on I/O errors (DiskWait, below); first, so that a crashed run's console stays
      await disksReadable(this.c, vm)
      if (this.aborted(id)) throw new StartAborted()
      // the driver's start replaces an ended run itself, carrying its console's end into
      // the new run's (bb34: removed here first, a crash's output went with the restart)
      this.consoles.drop(id)
      const lease = doc.leases.get(id)?.winner
      const disks = await attachVolumes(this.c, vm, lease?.epoch ?? 1)
      if (this.aborted(id)) throw new StartAborted()
      const info = await driver.start(driverSpec(vm, this.c.network?.overlayOf(id), disks, lease))
      // a kill or a graceful stop that came while the driver started it ends it now
      if (this.aborted(id)) throw new StartAborted()
      this.running.add(id)
      this.noteInterface(info, driver)
      this.c.metrics.starts.inc({ result: 'ok' })
      this.updateLease(id, { status: 'running', reason: `started by ${this.c.config.name}`, boot: bootDigest(vm.spec) })
    } catch (err) {
      if (this.aborted(id)) {
        const why = this.killAsked.has(id) ? 'killed while starting' : 'the service stopped while it started'
        await this.endAborted(id, driver, why)
        return
      }
      if (err instanceof DiskWait) {
        // no fault of the VM's: no crash. Its lease says why it waits (vm ls, vm show), and
        // the step starts it again once the pause is over, looking at its disks anew
        this.waitForDisks(id, err.message)
        await new Promise(resolve => setTimeout(resolve, DISK_WAIT_PAUSE_MS))
        return
      }
      if (err instanceof NothingToBoot) {
        // the same at every start until the volume is written: failed, no crash, not retried
        this.c.metrics.starts.inc({ result: 'failed' })
        this.c.log.warn('VM not started: its boot volume has nothing to boot', { vm: id, why: err.message })
        this.bootFailed(vm, err.message)
        return
      }
      if (err instanceof WatchdogDown) {
        // no fault of the VM's: not counted as a crash; the step starts it again once the
        // pause is over (the supervisor is tried again at each feed meanwhile)
        this.c.log.warn('VM not started: this node\'s fencing watchdog does not run, and a VM without it would outlive a crash of this agent', { vm: id, err: err.message })
        await new Promise(resolve => setTimeout(resolve, WATCHDOG_DOWN_PAUSE_MS))
        return
      }
      this.c.metrics.starts.inc({ result: 'failed' })
      this.c.log.warn('VM failed to start', { vm: id, err: (err as Error).message })
      this.startFailed(vm, `driver ${driver.name}: ${(err as Error).message}`)
    }
  }

  /**
   * A start held back while one of the VM's disks cannot be read (vm-disks.ts): its lease,
   * while this node's and not running (nor left stopped or failed), says `starting` with
   * why, written when that changes (a wait looks again every DISK_WAIT_PAUSE_MS).
   */
  private waitForDisks (id: string, why: string): void {
    const reason = leaseReason(why)
    if (this.c.state.read().get('leases', id)?.value.reason !== reason) this.c.log.warn('VM not started: one of its disks cannot be read', { vm: id, why })
    this.updateLease(id, { status: 'starting', reason }, l => (l.status == null || l.status === 'claimed' || l.status === 'starting') && l.reason !== reason)
  }

  /**
   * A failed start counts as a crash (the crash rule, onExit): the VM is started again
   * here (a start may fail for a moment: a QMP socket slow to answer on a loaded
   * machine), and left `failed`, with the reason, after three within 24 h. Busy until
   * written, or the step would start it again before the count is in the lease.
   */
  private startFailed (vm: Vm, detail: string): void {
    this.failStart(vm, (cur, at) => {
      const d = onExit(cur.crashes ?? [], at, { policy: vm.spec.restart === 'never' ? 'never' : 'always', detail: `start failed: ${detail}` })
      return { crashes: d.crashes, status: d.action === 'restart' ? 'starting' : 'failed', reason: d.reason }
    })
  }

  /** A start that cannot succeed as the VM is (NothingToBoot): left `failed` with why, no crash counted, until `vm start` places it anew. */
  private bootFailed (vm: Vm, why: string): void {
    this.failStart(vm, () => ({ status: 'failed', reason: leaseReason(why) }))
  }

  /**
   * A failed start written to the VM's lease as `patch` says, while the lease is this
   * node's. The run the driver keeps (its console says why; or one from before, a restart
   * here: rv46) goes once the lease is not this node's. Busy until written.
   */
  private failStart (vm: Vm, patch: (cur: Lease, at: number) => Partial<Lease>): void {
    const at = docStamp(this.c.clock)
    this.consoles.keep(vm.id)
    this.unwritten.set(vm.id, undefined)
    this.c.enqueue(w => {
      const cur = w.current('leases', vm.id)
      if (cur?.holder !== this.c.peerId) return
      w.update('leases', vm.id, logged(cur, patch(cur, at), at, this.c.config.name))
    }, { written: () => { this.unwritten.delete(vm.id) } })
  }

  /** A start called off: whatever the driver has of it is killed and removed. */
  private async endAborted (id: string, driver: VmDriver, why: string): Promise<void> {
    try {
      if (await killIfLive(driver, id)) await driver.remove(id).catch(() => {})
      this.c.log.info('killed a VM', { vm: id, why })
      this.c.history.add(id, { event: 'killed', node: this.c.config.name, detail: why })
    } catch (err) {
      // it may run: stopAll lists it, and a fenced step kills it again
      this.running.add(id)
      this.c.log.warn('could not kill a VM whose start was called off', { vm: id, err: (err as Error).message })
    }
  }

  /**
   * Stops (gracefully, then releases the lease) or kills one VM this node runs. A kill
   * pre-empts a graceful stop or a start in flight (a fenced node must not wait out a
   * stop's grace time, nor a guest's boot); anything else waits for the operation in flight.
   */
  async act (vm: string, how: 'stop' | 'kill', why: string): Promise<void> {
    const cur = this.ending.get(vm)
    if (cur != null && (cur.how === 'kill' || how === 'stop')) { await cur.done; return }
    const start = this.starting.get(vm)
    if (start != null) {
      // a start still in its pause before a restart ends it now, and starts nothing
      this.pauses.get(vm)?.()
      if (how === 'stop') return // the next step decides again once it runs
      this.killAsked.add(vm)
      // the driver ends a VM that is starting (host-base: its process); the start sees killAsked
      try {
        const d = await this.driverOf(vm)
        if (d != null) await killIfLive(d, vm)
      } catch (err) {
        this.c.log.warn('could not kill a VM while it started', { vm, err: (err as Error).message })
      }
      await start
      if (!this.running.has(vm)) return
    }
    if (!this.running.has(vm)) return
    const op: { how: 'stop' | 'kill', done: Promise<void> } = { how, done: Promise.resolve() }
    this.ending.set(vm, op)
    op.done = this.end(vm, how, why, op)
    await op.done
  }

  private async end (vm: string, how: 'stop' | 'kill', why: string, op: object): Promise<void> {
    try {
      const driver = await this.driverOf(vm)
      let ended: VmInfo | undefined
      if (driver != null) {
        if (how === 'kill') ended = await driver.kill(vm)
        else ended = await driver.stop(vm, this.init.stopGraceMs)
      }
      // a graceful stop that ended in a kill (the guest ignored the request, or could not
      // act on it) says so: a tester's history read "stopped" where the log said killed
      if (how === 'stop' && ended?.exit?.reason === 'killed' && ended.exit.watchdogKillAt == null) why = `${why} (killed after the ${this.init.stopGraceMs >= 1000 ? `${Math.round(this.init.stopGraceMs / 1000)} s` : `${this.init.stopGraceMs} ms`} grace time: the guest did not stop on the request)`
      // a kill that pre-empted this stop does the rest
      if (this.ending.get(vm) !== op) return
      // the watchdog was first (this agent stalled or was stopped): that kill is what happened, when it happened
      const watchdogAt = ended?.exit?.watchdogKillAt
      if (watchdogAt != null) {
        this.running.delete(vm)
        this.forgetInterface(vm)
        this.watchdogKilled(vm, watchdogAt, ended?.exit?.watchdogKillBy, ended?.exit?.guardSawStall)
        return
      }
      // a VM stopped on request keeps its run (its last console) and its lease, `stopped`
      const keep = how === 'stop' && this.c.state.read().get('vms', vm)?.value.desired === 'stopped'
      if (keep) this.consoles.keep(vm)
      else if (driver != null) await driver.remove(vm).catch(() => {})
      this.running.delete(vm)
      this.forgetInterface(vm)
      this.c.log.info(how === 'kill' ? 'killed a VM' : 'stopped a VM', { vm, why })
      if (how === 'kill') this.c.metrics.kills.inc({ why: why.startsWith('fenced') ? 'fenced' : 'lost' })
      // a stop: the lease says so (parked), while it is this node's. A fenced kill whose lease is this
      // node's and running: the lease says so too (below), but the majority may have taken
      // it over meanwhile, and that update is lost: this node's history keeps it (shown
      // once, while the log has it too)
      const at = docStamp(this.c.clock)
      // a fenced kill says the same here as in the lease's log (below), which then shows it once
      const fencedReason = how === 'kill' && why.startsWith('fenced') ? fencedKillReason(why) : undefined
      if (!keep) this.c.history.add(vm, { event: how === 'kill' ? 'killed' : 'stopped', node: this.c.config.name, detail: fencedReason ?? why }, at)
      // the lease stays `stopped` while the VM is desired stopped. A VM that should run
      // (a drain moves it) is parked: placed anew over its lease at the next epoch, by
      // any node, its history carried on with this stop in it. A VM removed meanwhile:
      // its lease goes
      if (how === 'stop') {
        const reason = `stopped on ${this.c.config.name}: ${why}`
        this.c.enqueue(w => {
          const l = w.current('leases', vm)
          if (l?.holder !== this.c.peerId || this.leaveStopped(w, vm, reason, at)) return
          if (movesOn(l, w.reader.get('vms', vm)?.value)) w.update('leases', vm, parkedLease(l, reason, at, this.c.config.name))
          else w.remove('leases', vm)
        })
      }
      // fenced, with the lease still this node's (no other took it over, or none could):
      // the lease says so, for every agent's history, until the step starts it again. A
      // takeover elsewhere puts a new lease, which this update of the old one cannot touch
      else if (fencedReason != null) {
        this.updateLease(vm, { status: 'starting', reason: fencedReason }, l => l.status === 'running', at)
        // the majority took it over meanwhile (the usual case: this side was cut off): the
        // new lease's log gets the kill once this node has it, for every node's history
        this.logMovedKill(vm, at, fencedReason, ended?.startedAt)
      }
    } catch (err) {
      this.c.log.warn(`could not ${how} a VM`, { vm, err: (err as Error).message })
    } finally {
      if (this.ending.get(vm) === op) this.ending.delete(vm)
      this.c.schedule()
    }
  }

  /** A VM's process ended: unless this node asked, a crash (the restart rule decides), or the fencing watchdog's kill. */
  private exited (e: { id: string } & VmExit): void {
    if (!this.running.has(e.id) || this.ending.has(e.id) || this.killAsked.has(e.id)) return
    this.running.delete(e.id)
    this.forgetInterface(e.id)
    if (e.watchdogKillAt != null) this.watchdogKilled(e.id, e.watchdogKillAt, e.watchdogKillBy, e.guardSawStall)
    else this.recordExit(e.id, e)
  }

  /**
   * The fencing watchdog killed a VM while this agent fed it no more (it stalled, or was
   * stopped): no crash. While the lease is this node's and running, it says so (logged
   * when the watchdog killed it), and the step starts the VM again once this node may;
   * this node's history keeps it either way (a lease the majority took over meanwhile
   * does not say it).
   */
  private watchdogKilled (vm: string, at: number, by?: 'guard', stalled?: true): void {
    const when = new Date(at).toISOString()
    const why = by === 'guard'
      ? `killed by its guard at ${when}: the fencing watchdog's supervisor was ${stalled === true ? 'stopped or stalled, its agent not there to wake it' : 'gone (killed)'}, and nothing would have fenced it`
      : `killed by the fencing watchdog at ${when}: this agent did not feed it in time (it stalled, or was stopped)`
    this.c.log.warn(by === 'guard' ? 'a VM\'s guard killed it: the fencing watchdog\'s supervisor was gone or had stopped beating' : 'the fencing watchdog killed a VM while this agent did not feed it', { vm, at: when })
    this.c.metrics.kills.inc({ why: 'fenced' })
    this.consoles.keep(vm)
    this.c.history.add(vm, { event: 'killed', node: this.c.config.name, detail: why }, at)
    this.updateLease(vm, { status: 'starting', reason: why }, l => l.status === 'running', at)
    // a lease the majority took over meanwhile: its log says it (for every node's history)
    this.logMovedKill(vm, at, why, undefined)
  }

  /** An exit this node did not ask for, seen live or left from a previous run (start): the crash rule and the lease update. */
  private recordExit (id: string, e: VmExit): void {
    const l = this.c.state.read().get('leases', id)?.value
    const vm = this.c.state.read().get('vms', id)?.value
    if (l == null || l.holder !== this.c.peerId || vm == null) return
    const rebooted = e.reason === 'rebooted'
    // the history reads the event from the reason's first word (history.ts)
    const detail = rebooted ? 'rebooted by its guest' : e.why != null ? `${e.reason}: ${e.why}` : `${e.reason}${e.code != null ? ` (code ${e.code})` : ''}${e.signal != null ? ` (${e.signal})` : ''}`
    const at = docStamp(this.c.clock)
    const ranMs = e.startedAt != null ? e.at - e.startedAt : undefined
    const d = onExit(this.crashesUnwritten.get(id) ?? l.crashes ?? [], at, { policy: vm.spec.restart, clean: e.reason === 'exited', rebooted, detail, ranMs, quickRuns: this.quickRuns.get(id) ?? 0 })
    // quick clean runs in a row wait longer and longer (restart.ts); anything else starts the count again
    const quick = d.action === 'restart' && (e.reason === 'exited' || rebooted) && ranMs != null && ranMs < QUICK_RUN_MS && d.crashes.at(-1) !== at
    if (quick) this.quickRuns.set(id, (this.quickRuns.get(id) ?? 0) + 1)
    else this.quickRuns.delete(id)
    if (d.action === 'restart' && d.delayMs != null) this.restartNotBefore.set(id, performance.now() + d.delayMs)
    // a crash is counted with its time: a clean exit that is none (completed, or restarted under always) is not
    if (d.crashes.at(-1) === at) this.c.metrics.crashes.inc()
    // one left stopped by the crash rule (not a clean end) is worth an operator's look (bb32: INFO)
    if (d.action === 'stop' && d.completed !== true && vm.spec.restart !== 'never') this.c.log.warn('VM exited and is left stopped', { vm: id, detail, reason: d.reason })
    else this.c.log.info('VM exited', { vm: id, detail, action: d.action })
    this.consoles.keep(id)
    // while the update is not written the step would restart it: busy until it is
    if (d.action === 'stop') this.unwritten.set(id, d.reason)
    const crashes = d.crashes
    this.crashesUnwritten.set(id, crashes)
    this.c.enqueue(w => {
      const cur = w.current('leases', id)
      if (cur?.holder !== this.c.peerId) return
      w.update('leases', id, logged(cur, { crashes, status: d.action === 'restart' ? 'starting' : 'stopped', reason: d.reason, ...(d.action === 'stop' && d.completed === true ? { completed: true } : {}) }, at, this.c.config.name))
    }, {
      written: () => {
        this.unwritten.delete(id)
        // a later exit's list (longer) stays until its own write
        if (this.crashesUnwritten.get(id) === crashes) this.crashesUnwritten.delete(id)
      }
    })
  }

  /**
   * The lease of a VM desired stopped that this node holds and runs nothing of: set to
   * `stopped` (decide's park), so it names this node, which keeps the last console.
   */
  park (vm: string, why: string): void {
    const at = docStamp(this.c.clock)
    this.c.enqueue(w => { this.leaveStopped(w, vm, `stopped on ${this.c.config.name}: ${why}`, at) }, { key: `park:${vm}` })
  }

  /**
   * In a write: this node's lease of `vm`, while the VM is desired stopped, says
   * `stopped` (with `reason`, and what it said before unless it ran), logged at `at`.
   * False, with nothing written, when the lease is not this node's or the VM not desired stopped.
   */
  private leaveStopped (w: Writer, vm: string, reason: string, at: number): boolean {
    const l = w.current('leases', vm)
    if (l?.holder !== this.c.peerId || w.reader.get('vms', vm)?.value.desired !== 'stopped') return false
    if (l.status === 'stopped') return true
    w.update('leases', vm, parkedLease(l, reason, at, this.c.config.name))
    return true
  }

  /** Removes the ended runs (their consoles) of VMs whose lease is no longer this node's (console.ts). */
  sweep (doc: DocView): void {
    this.consoles.sweep(doc)
    // counts of VMs no longer held here, or asked stopped (a start by hand begins anew)
    for (const id of this.quickRuns.keys()) {
      if (doc.leases.get(id)?.winner.holder !== this.c.peerId || doc.vms.get(id)?.desired !== 'running') { this.quickRuns.delete(id); this.restartNotBefore.delete(id) }
    }
    // a pause whose VM was asked stopped, removed or moved meanwhile ends now (its start then
    // does nothing); on a draining node too: the drain moves it at once (bb54: it waited out
    // the pause, up to 5 min, then booted here only to be stopped and moved)
    const draining = doc.roll.get(this.c.peerId)?.draining === true
    for (const [id, wake] of [...this.pauses]) {
      // and one a `vm start` asked after it began: an operator's start is now, and starts the count of quick runs anew
      const asked = (doc.vms.get(id)?.startAsked ?? -Infinity) >= (this.pausedSince.get(id) ?? Infinity)
      if (asked) this.quickRuns.delete(id)
      if (asked || draining || doc.leases.get(id)?.winner.holder !== this.c.peerId || doc.vms.get(id)?.desired !== 'running') wake()
    }
    if (this.movedKills.size > 0) this.flushMovedKills(doc)
  }

  private noteInterface (info: VmInfo, driver: VmDriver): void {
    if (info.network == null) return
    this.ifaces.set(info.id, { hostIf: info.network.hostIf, linkAddress: info.network.vmAddress, driver, run: `${info.network.hostIf}@${info.pid ?? ''}:${info.startedAt ?? ''}` })
    this.c.network?.interfacesChanged()
  }

  private forgetInterface (vm: string): void {
    if (this.ifaces.delete(vm)) this.c.network?.interfacesChanged()
  }

  /** The node's end of a VM's link, for VMs this node runs (null for others). */
  interfaceOf (vm: string): string | null {
    return this.ifaces.get(vm)?.hostIf ?? null
  }

  /** Which run of a VM's interface this is (a VM started again gets a new interface of the same name), or null. */
  interfaceRun (vm: string): string | null {
    return this.ifaces.get(vm)?.run ?? null
  }

  /** The VM this node runs whose end of its link has `address` (its /30's .2, host/net.ts), or null. */
  vmOfLinkAddress (address: string): string | null {
    for (const [vm, r] of this.ifaces) if (r.linkAddress === address) return vm
    return null
  }

  /** Tells a running VM its terminal names anew, where its driver can (see VmDriver.setNames). */
  async setNames (vm: string, names: Record<string, string>): Promise<boolean> {
    const r = this.ifaces.get(vm)
    if (r?.driver.setNames == null) return false
    await r.driver.setNames(vm, names)
    return true
  }

  addressOf (vm: string): string | null {
    return this.c.network?.overlayOf(vm)?.address ?? null
  }

  async runtimeOf (vm: string): Promise<VmInfo | null> {
    const d = this.ifaces.get(vm)?.driver ?? await this.driverOf(vm)
    return (await d?.inspect(vm)) ?? null
  }

  /** the driver that has the VM on this node (running or ended), if any */
  private async driverOf (vm: string): Promise<VmDriver | undefined> {
    for (const d of this.drivers()) if ((await d.inspect(vm)) != null) return d
    return undefined
  }

  /** The tail of a VM's console, or what came past `since`, from whichever node holds its lease (console.ts). */
  async console (vmId: string, since?: ConsoleSince): Promise<{ holder: string } & ConsoleAnswer> { return await this.consoles.of(vmId, since) }

  private drivers (): Set<VmDriver> { return new Set(Object.values(this.c.drivers)) }
}
