// The VMs this node runs. The decision loop (service.ts) says which VMs start, stop or
// die here; this carries that out on the drivers and reports crashes back to it, and is
// the glue to the rest of the node: each VM started with its overlay address, terminal
// names and volumes; its interface handed to the LCM, which routes its overlay address
// there; its terminal names told anew when links change; its console answered over
// `/vgrid/dvmm/console/1.0.0`, or asked of the holder for a VM elsewhere.
import type { Lease, Reader, Vm, Writer } from '../../crdt/index.ts'
import { onExit } from '../../crdt/placement/index.ts'
import { ConflictError, UnavailableError } from '../errors.ts'
import type { Logger } from '../log.ts'
import { request, serve, type RequestHost } from '../p2p/request.ts'
import type { Clock } from '../service.ts'
import { DriverError, type DriverVmSpec, type VmDriver, type VmExit, type VmInfo, type VmOverlay } from './drivers/types.ts'
import type { History } from './history.ts'
import { leftBehind } from './left-behind.ts'
import type { DvmmMetrics } from './metrics.ts'
import type { DocView } from './view.ts'
import { attachVolumes, type VolumeAccess } from './vm-disks.ts'

/** `/vgrid/dvmm/console/1.0.0`: the tail of a VM's console log, asked of its holder ({vm} -> {console} or {error}) */
export const CONSOLE_PROTOCOL = '/vgrid/dvmm/console/1.0.0'
const CONSOLE_BYTES = 64 * 1024
const MiB = 2 ** 20

/** the connection manager, where the grid has an overlay */
export interface VmNetworkHooks {
  overlayOf: (vm: string) => VmOverlay | null
  /** a VM of this node started, was adopted or went: its interface appeared or vanished */
  interfacesChanged: () => void
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
  /** the volume store on this node: where a volume is served over NBD (null: no such volume) */
  volumes?: VolumeAccess
  metrics: Pick<DvmmMetrics, 'starts' | 'kills' | 'crashes'>
  history: Pick<History, 'add'>
  /** queues a lease update for the decision loop's next write (`written`: called once it is written) */
  enqueue: (fn: (w: Writer) => void, opts?: { written?: () => void }) => void
  /** asks the decision loop for a step soon */
  schedule: () => void
}

export interface LocalVmsInit {
  stopGraceMs: number
}

export function driverSpec (vm: Vm, overlay?: VmOverlay | null, disks?: Array<{ uri: string }>): DriverVmSpec {
  const s = vm.spec
  const boot: DriverVmSpec['boot'] = s.command != null && s.command.length > 0
    ? { kind: 'command', command: s.command, ...(s.user != null ? { user: s.user } : {}) }
    : s.kernel != null ? { kind: 'kernel', kernel: s.kernel, initrd: s.initrd, cmdline: s.cmdline } : { kind: 'disk', image: s.image ?? '' }
  return { id: vm.id, vcpus: s.cpu, memoryMiB: Math.max(1, Math.ceil(s.memoryBytes / MiB)), boot, ...(overlay != null ? { overlay } : {}), ...(disks != null && disks.length > 0 ? { disks } : {}) }
}

/**
 * A time written into the document (the roll's joined, crash records): whole ms of wall
 * time where the clock has it apart from its monotonic `now`, which other nodes and
 * later runs cannot compare with theirs.
 */
export function docStamp (clock: Clock & { wall?: () => number }): number {
  return Math.floor(clock.wall?.() ?? clock.now())
}

/** the VMs a driver lists whose process may run: running, starting or stopping */
async function listedLive (d: VmDriver): Promise<string[]> {
  return (await d.list()).filter(v => v.state === 'running' || v.state === 'starting' || v.state === 'stopping').map(v => v.id)
}

/** kills the VM where the driver knows it and it has not ended; whether the driver knows it */
async function killIfLive (d: VmDriver, id: string): Promise<boolean> {
  const info = await d.inspect(id)
  if (info != null && info.state !== 'stopped' && info.state !== 'failed') await d.kill(id)
  return info != null
}

/** a start called off while it ran (see LocalVms.aborted) */
class StartAborted extends Error { override message = 'start called off' }

export class LocalVms {
  private readonly c: LocalVmsComponents
  private readonly init: LocalVmsInit
  private readonly running = new Set<string>()
  /** starts in flight (the decision step leaves these VMs be; a graceful stop waits for them) */
  private readonly starting = new Map<string, Promise<void>>()
  /** stops and kills in flight: their exits are no crashes */
  private readonly ending = new Map<string, { how: 'stop' | 'kill', done: Promise<void> }>()
  /** a kill asked for while the VM was starting: the start ends it */
  private readonly killAsked = new Set<string>()
  /** VMs that exited for good whose lease update is not written yet */
  private readonly unwritten = new Set<string>()
  /** a graceful stop of the service began: a start that completes now is killed */
  private closing = false
  /** their interfaces on this node (the connection manager routes their overlay addresses there), and the driver of each */
  private readonly ifaces = new Map<string, { hostIf: string, driver: VmDriver }>()
  private readonly onDriverExit = (e: { id: string } & VmExit): void => { this.exited(e) }

  constructor (components: LocalVmsComponents, init: LocalVmsInit) {
    this.c = components
    this.init = init
  }

  /** VMs this node's drivers run (started or adopted) */
  get runs (): ReadonlySet<string> { return this.running }
  /** VMs being started, stopped or killed, or whose exit is not written yet: the decision step leaves them be (a fenced one kills them) */
  get busy (): ReadonlySet<string> { return new Set([...this.starting.keys(), ...this.ending.keys(), ...this.unwritten]) }
  /** VMs whose process may run here: running, starting or being stopped */
  get live (): ReadonlySet<string> { return new Set([...this.running, ...this.starting.keys(), ...this.ending.keys()]) }

  /**
   * Takes over what a previous run of this agent left (leftBehind): VMs still running
   * are adopted (if the lease is another node's, the step kills them), exits nobody
   * wrote go through the crash rule; then answers console requests.
   */
  async start (): Promise<void> {
    const killedWhileDown: string[] = []
    for (const d of this.drivers()) {
      // list() records and emits exits it finds: exited() skips them (not running), the left ones are judged here
      d.on('exit', this.onDriverExit)
      for (const vm of await d.list()) {
        // read after the await: a reader taken before it is stale once a peer's change arrived
        const act = leftBehind(vm, this.c.state.read().get('leases', vm.id)?.value, this.c.peerId)
        if (act.do === 'adopt') {
          this.running.add(vm.id)
          this.noteInterface(vm, d)
        } else if (act.do === 'exit') {
          this.c.log.info('a VM ended while the agent was down', { vm: vm.id, reason: act.exit.reason })
          this.recordExit(vm.id, act.exit)
        } else if (act.do === 'restart') {
          killedWhileDown.push(vm.id)
          this.updateLease(vm.id, { status: 'starting', reason: act.why })
        }
      }
    }
    if (this.ifaces.size > 0) this.c.network?.interfacesChanged()
    if (this.running.size > 0) this.c.log.info('found VMs of a previous run', { vms: [...this.running] })
    // the agent came back later than the fence timeout: its VMs were killed, and run again now
    if (killedWhileDown.length > 0) this.c.log.warn('the fencing watchdog killed VMs while the agent was down; starting them again (an agent back within the fence timeout keeps them running)', { vms: killedWhileDown })
    if (this.c.host != null) await serve(this.c.host, CONSOLE_PROTOCOL, async req => await this.localConsole(req))
  }

  /** Leaves the VMs as they are (stopAll stops them). */
  async stop (): Promise<void> {
    for (const d of this.drivers()) d.off('exit', this.onDriverExit)
    await this.c.host?.unhandle(CONSOLE_PROTOCOL).catch(() => {})
  }

  /**
   * Stops every VM on this node, gracefully: waits for the starts in flight (one that
   * completes from now on is killed), then stops every VM a driver lists as running or
   * starting, not only those this run knows of. Returns the VMs some driver still lists
   * as running, starting or stopping: their leases must stay.
   */
  async stopAll (why: string): Promise<Set<string>> {
    this.closing = true
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

  /** the lease as its write finds it, while it is this node's (and `onlyIf` holds) */
  private updateLease (vm: string, patch: Partial<Lease>, onlyIf: (l: Lease) => boolean = () => true): void {
    this.c.enqueue(w => {
      const l = w.reader.get('leases', vm)?.value
      if (l?.holder !== this.c.peerId || !onlyIf(l)) return
      w.update('leases', vm, patch)
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
    try {
      const old = await driver.inspect(id)
      if (old != null && (old.state === 'stopped' || old.state === 'failed')) await driver.remove(id)
      const disks = await attachVolumes(this.c, vm, doc.leases.get(id)?.winner.epoch ?? 1)
      if (this.aborted(id)) throw new StartAborted()
      const info = await driver.start(driverSpec(vm, this.c.network?.overlayOf(id), disks))
      // a kill or a graceful stop that came while the driver started it ends it now
      if (this.aborted(id)) throw new StartAborted()
      this.running.add(id)
      this.noteInterface(info, driver)
      this.c.metrics.starts.inc({ result: 'ok' })
      this.updateLease(id, { status: 'running', reason: `started by ${this.c.config.name}` })
    } catch (err) {
      if (this.aborted(id)) {
        const why = this.killAsked.has(id) ? 'killed while starting' : 'the service stopped while it started'
        await this.endAborted(id, driver, why)
        return
      }
      this.c.metrics.starts.inc({ result: 'failed' })
      this.c.log.warn('VM failed to start', { vm: id, err: (err as Error).message })
      this.updateLease(id, { status: 'failed', reason: `driver ${driver.name}: ${(err as Error).message}` })
    }
  }

  /** A start called off: whatever the driver has of it is killed and removed. */
  private async endAborted (id: string, driver: VmDriver, why: string): Promise<void> {
    try {
      if (await killIfLive(driver, id)) await driver.remove(id).catch(() => {})
      this.c.log.info('killed a VM', { vm: id, why })
      this.c.history.add(id, { at: this.c.clock.now(), event: 'killed', node: this.c.config.name, detail: why })
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
      if (driver != null) {
        if (how === 'kill') await driver.kill(vm)
        else await driver.stop(vm, this.init.stopGraceMs)
      }
      // a kill that pre-empted this stop does the rest
      if (this.ending.get(vm) !== op) return
      if (driver != null) await driver.remove(vm).catch(() => {})
      this.running.delete(vm)
      this.forgetInterface(vm)
      this.c.log.info(how === 'kill' ? 'killed a VM' : 'stopped a VM', { vm, why })
      if (how === 'kill') this.c.metrics.kills.inc({ why: why.startsWith('fenced') ? 'fenced' : 'lost' })
      this.c.history.add(vm, { at: this.c.clock.now(), event: how === 'kill' ? 'killed' : 'stopped', node: this.c.config.name, detail: why })
      if (how === 'stop') this.c.enqueue(w => { if (w.reader.get('leases', vm)?.value.holder === this.c.peerId) w.remove('leases', vm) })
      // fenced, with the lease still this node's (no other took it over, or none could):
      // the lease says so, for every agent's history, until the step starts it again. A
      // takeover elsewhere puts a new lease, which this update of the old one cannot touch
      else if (why.startsWith('fenced')) this.updateLease(vm, { status: 'starting', reason: `killed: ${why}` }, l => l.status === 'running')
    } catch (err) {
      this.c.log.warn(`could not ${how} a VM`, { vm, err: (err as Error).message })
    } finally {
      if (this.ending.get(vm) === op) this.ending.delete(vm)
      this.c.schedule()
    }
  }

  /** A VM's process ended: unless this node asked, a crash; the restart rule decides. */
  private exited (e: { id: string } & VmExit): void {
    if (!this.running.has(e.id) || this.ending.has(e.id) || this.killAsked.has(e.id)) return
    this.running.delete(e.id)
    this.forgetInterface(e.id)
    this.recordExit(e.id, e)
  }

  /** An exit this node did not ask for, seen live or left from a previous run (start): the crash rule and the lease update. */
  private recordExit (id: string, e: VmExit): void {
    const l = this.c.state.read().get('leases', id)?.value
    const vm = this.c.state.read().get('vms', id)?.value
    if (l == null || l.holder !== this.c.peerId || vm == null) return
    this.c.metrics.crashes.inc()
    const detail = `${e.reason}${e.code != null ? ` (code ${e.code})` : ''}${e.signal != null ? ` (${e.signal})` : ''}`
    const d = onExit(l.crashes ?? [], docStamp(this.c.clock), { policy: vm.spec.restart, clean: e.reason === 'exited', detail })
    this.c.log.info('VM exited', { vm: id, detail, action: d.action })
    // while the update is not written the step would restart it: busy until it is
    if (d.action === 'stop') this.unwritten.add(id)
    this.c.enqueue(w => {
      if (w.reader.get('leases', id)?.value.holder !== this.c.peerId) return
      w.update('leases', id, { crashes: d.crashes, status: d.action === 'restart' ? 'starting' : 'stopped', reason: d.reason })
    }, { written: () => { this.unwritten.delete(id) } })
  }

  private noteInterface (info: VmInfo, driver: VmDriver): void {
    if (info.network == null) return
    this.ifaces.set(info.id, { hostIf: info.network.hostIf, driver })
    this.c.network?.interfacesChanged()
  }

  private forgetInterface (vm: string): void {
    if (this.ifaces.delete(vm)) this.c.network?.interfacesChanged()
  }

  /** The node's end of a VM's link, for VMs this node runs (null for others). */
  interfaceOf (vm: string): string | null {
    return this.ifaces.get(vm)?.hostIf ?? null
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

  /** The tail of a VM's console, from whichever node holds it. */
  async console (vmId: string): Promise<{ holder: string, console: string }> {
    const l = this.c.state.read().get('leases', vmId)?.value
    if (l == null) throw new ConflictError(`VM ${vmId} runs nowhere`, 'not_running')
    // a VM whose start failed before its driver made it (a bad command, a missing
    // kernel) has no console: say so with why it failed, not as a driver fault
    const none = (why: string): ConflictError => new ConflictError(`VM ${vmId} has no console${l.status === 'failed' && l.reason != null ? `: it failed before it ran (${l.reason})` : ''}: ${why}`, 'no_console')
    if (l.holder === this.c.peerId) {
      try {
        return { holder: this.c.peerId, console: (await this.localConsole({ vm: vmId })).console }
      } catch (err) {
        if (err instanceof DriverError && err.code === 'not-found') throw none(err.message)
        throw err
      }
    }
    const host = this.c.host
    if (host == null) throw new ConflictError(`VM ${vmId} runs on another node, and this agent does not talk to other nodes`, 'elsewhere')
    let answer: unknown
    try {
      answer = await request(host, l.holder, CONSOLE_PROTOCOL, { vm: vmId }, { timeoutMs: 5000, maxAnswerBytes: CONSOLE_BYTES * 4 + 1024 })
    } catch (err) {
      throw new UnavailableError(`VM ${vmId}'s holder did not answer for its console: ${(err as Error).message}`, 'holder_unreachable')
    }
    const a = answer as { console?: unknown, error?: unknown } | null
    if (typeof a?.console === 'string') return { holder: l.holder, console: a.console }
    const said = typeof a?.error === 'string' ? a.error : 'no console'
    // the driver there has no such VM (it never ran): no console; anything else is the holder's answer
    if (/^no \S+ VM \S+ on this node$/.test(said)) throw none(`its holder says: ${said}`)
    throw new ConflictError(`VM ${vmId}'s holder says: ${said}`, 'elsewhere')
  }

  /** This node's answer to a console request: only for a VM it holds. */
  private async localConsole (req: unknown): Promise<{ console: string }> {
    const vmId = (req as { vm?: unknown } | null)?.vm
    if (typeof vmId !== 'string' || vmId.length > 128) throw new Error('a console request is {"vm": id}')
    const reader = this.c.state.read()
    const vm = reader.get('vms', vmId)?.value
    if (vm == null) throw new Error(`no VM "${vmId}"`)
    if (reader.get('leases', vmId)?.value.holder !== this.c.peerId) throw new Error(`VM ${vmId} does not run on this node`)
    const driver = this.c.drivers[vm.spec.driver]
    if (driver == null) throw new Error(`driver ${vm.spec.driver} is not available on this node`)
    return { console: await driver.consoleTail(vmId, CONSOLE_BYTES) }
  }

  private drivers (): Set<VmDriver> { return new Set(Object.values(this.c.drivers)) }
}
