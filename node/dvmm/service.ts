// The DVMM service: VMs anywhere on the grid, placed by leases in the cluster
// document. The decisions are pure (crdt/placement, decide.ts); this shell reads the
// document and membership, runs one decision step on every change and on a timer,
// writes claims and statuses in one change per step (an agent gets few acknowledged
// writes per second while many peers sync), and carries the answer out through the
// drivers. Liveness is never written to the document.
import type { EventEmitter } from 'node:events'
import type { Registry } from 'prom-client'
import type { Lease, Reader, Vm, Writer } from '../../crdt/index.ts'
import { fenced, haCheck, onExit, rank, reservedBy, usageOf, type FenceDecision, type HaReport, type Strategy } from '../../crdt/placement/index.ts'
import type { MemberTable } from '../../protocol/membership.ts'
import type { MembershipEvents } from '../../protocol/membership-service.ts'
import type { Resources } from '../../protocol/advert.ts'
import type { Logger } from '../log.ts'
import type { Clock } from '../service.ts'
import type { StateEvents } from '../state/index.ts'
import type { DriverVmSpec, VmDriver, VmExit, VmInfo, VmOverlay } from './drivers/types.ts'
import { decide, type Decisions } from './decide.ts'
import { History } from './history.ts'
import { DvmmMetrics } from './metrics.ts'
import { demandOf, docView, holdings, nodeViews, type DocView } from './view.ts'
import { dvmmRoutes } from './routes.ts'
import { request, serve, type RequestHost } from '../p2p/request.ts'
import { ConflictError, UnavailableError } from '../errors.ts'

/** `/vgrid/dvmm/console/1.0.0`: the tail of a VM's console log, asked of its holder ({vm} -> {console} or {error}) */
export const CONSOLE_PROTOCOL = '/vgrid/dvmm/console/1.0.0'
const CONSOLE_BYTES = 64 * 1024
import type { FastifyInstance } from 'fastify'

/** what DVMM uses of the state service */
export interface DvmmState extends Pick<EventEmitter<StateEvents>, 'on' | 'off'> {
  read: () => Reader
  write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T>
}

/** what DVMM uses of membership */
export interface DvmmMembership extends Pick<EventEmitter<MembershipEvents>, 'on' | 'off'> {
  readonly members: MemberTable
}

export interface DvmmComponents {
  peerId: string
  log: Logger
  clock: Clock
  registry: Registry
  config: { name: string }
  state: DvmmState
  membership: DvmmMembership
  /** the drivers this node runs VMs with, by the spec's driver name */
  drivers: Partial<Record<Vm['spec']['driver'], VmDriver>>
  /** the resources the leases this node holds reserve: the agent puts them in its advert */
  onReserved: (r: Resources) => void
  /** the connection manager, where the grid has an overlay: each VM's address and names, told when local VMs come and go */
  network?: VmNetworkHooks
  /** libp2p, to answer and ask for consoles of VMs on other nodes */
  host?: RequestHost
  /** the volume store on this node: where a volume is served over NBD (null: no such volume) */
  volumes?: { uriOf: (volumeId: string) => string | null }
}

export interface VmNetworkHooks {
  overlayOf: (vm: string) => VmOverlay | null
  /** a VM of this node started, was adopted or went: its interface appeared or vanished */
  interfacesChanged: () => void
}

export interface DvmmInit {
  /** a claim starts its VM after this long without a conflicting claim (> document propagation) */
  settleMs?: number
  /** a node without a majority of the roll this long kills its VMs */
  fenceTimeoutMs?: number
  /** takeover waits fence timeout + this, from when the holder was last heard of */
  takeoverMarginMs?: number
  /** the decision step also runs this often (timers: settle, takeover, fence) */
  tickMs?: number
  /** changes arriving within this window are decided on together */
  debounceMs?: number
  stopGraceMs?: number
  strategy?: Strategy
  /**
   * An agent whose own timers were late by this much stalled (SIGSTOP, a hung event
   * loop): its fencing watchdog has killed its VMs, and what it knows of the grid is
   * stale. It then claims and starts nothing for fence timeout + margin, until fresh
   * membership and the document tell it whether its leases moved (default 3 s, the
   * watchdog's timeout as the agent wires it)
   */
  stallMs?: number
  /**
   * When this node last knew it was alive in the grid before this run: a restarted
   * agent's previous run's last watchdog feed. Its fence counts from there, so a
   * restart that finds no majority kills the VMs it adopted before any takeover.
   */
  lastAliveAt?: number
}

const MiB = 2 ** 20
/** the least time between two adverts of this node's reservations */
const RESERVED_EVERY_MS = 2000

export function driverSpec (vm: Vm, overlay?: VmOverlay | null, disks?: Array<{ uri: string }>): DriverVmSpec {
  const s = vm.spec
  const boot: DriverVmSpec['boot'] = s.command != null && s.command.length > 0
    ? { kind: 'command', command: s.command }
    : s.kernel != null ? { kind: 'kernel', kernel: s.kernel, initrd: s.initrd, cmdline: s.cmdline } : { kind: 'disk', image: s.image ?? '' }
  return { id: vm.id, vcpus: s.cpu, memoryMiB: Math.max(1, Math.ceil(s.memoryBytes / MiB)), boot, ...(overlay != null ? { overlay } : {}), ...(disks != null && disks.length > 0 ? { disks } : {}) }
}

export class DvmmService {
  readonly name = 'dvmm'
  readonly history = new History()
  readonly metrics: DvmmMetrics
  readonly components: DvmmComponents
  private readonly cfg: Required<DvmmInit>
  private readonly log: Logger
  /** VMs this node's drivers run (started or adopted) */
  private readonly runs = new Set<string>()
  /** their interfaces on this node (the connection manager routes their overlay addresses there) */
  private readonly ifaces = new Map<string, { hostIf: string, driver: VmDriver }>()
  private readonly busy = new Set<string>()
  /** stops and kills this node asked for: their exits are no crashes */
  private readonly expected = new Set<string>()
  private readonly claimedAt = new Map<string, number>()
  private readonly conflictSeenAt = new Map<string, number>()
  private readonly claimHolders = new Map<string, string>()
  private readonly unplacedSince = new Map<string, number>()
  private readonly heard = new Map<string, number>()
  private readonly silentSince = new Map<string, number>()
  /** document updates waiting for the next step's write */
  private pending: Array<(w: Writer) => void> = []
  private lastMajorityAt = 0
  private startedAt = 0
  private fence?: FenceDecision
  private lastReserved = ''
  private lastStepMs = 0
  private lastStepEnd = 0
  private running = false
  private stepping = false
  private dirty = false
  private timer?: NodeJS.Timeout
  private wakeTimer?: NodeJS.Timeout
  private debounce?: NodeJS.Timeout
  private readonly onChange = (): void => { this.schedule() }
  private readonly onDriverExit = (e: { id: string } & VmExit): void => { this.exited(e) }

  constructor (components: DvmmComponents, init: DvmmInit = {}) {
    this.components = components
    this.log = components.log.child('dvmm')
    this.cfg = {
      settleMs: init.settleMs ?? 1500,
      fenceTimeoutMs: init.fenceTimeoutMs ?? 5000,
      takeoverMarginMs: init.takeoverMarginMs ?? 1500,
      tickMs: init.tickMs ?? 500,
      debounceMs: init.debounceMs ?? 20,
      stopGraceMs: init.stopGraceMs ?? 10_000,
      strategy: init.strategy ?? 'spread',
      stallMs: init.stallMs ?? 3000,
      lastAliveAt: init.lastAliveAt ?? 0 // 0: none (a first start)
    }
    this.metrics = new DvmmMetrics(components.registry)
  }

  get me (): string { return this.components.peerId }
  get config (): Readonly<Required<DvmmInit>> { return this.cfg }
  get fenceState (): FenceDecision | undefined { return this.fence }
  routes (app: FastifyInstance): void { dvmmRoutes(this)(app) }

  async start (): Promise<void> {
    this.running = true
    this.startedAt = this.components.clock.now()
    this.lastMajorityAt = this.cfg.lastAliveAt > 0 ? Math.min(this.startedAt, this.cfg.lastAliveAt) : this.startedAt
    for (const d of new Set(Object.values(this.components.drivers))) {
      d.on('exit', this.onDriverExit)
      // VMs a previous run of this agent left: adopted if the lease is still ours, else killed (decide)
      for (const vm of await d.list()) {
        if (vm.state !== 'running' && vm.state !== 'starting') continue
        this.runs.add(vm.id)
        this.noteInterface(vm, d)
      }
    }
    if (this.ifaces.size > 0) this.components.network?.interfacesChanged()
    if (this.runs.size > 0) this.log.info('found VMs of a previous run', { vms: [...this.runs] })
    this.components.state.on('changed', this.onChange)
    this.components.membership.on('transition', this.onChange)
    if (this.components.host != null) await serve(this.components.host, CONSOLE_PROTOCOL, async req => await this.localConsole(req))
    if (this.components.state.read().get('roll', this.me) == null) {
      const now = this.components.clock.now()
      this.pending.push(w => { if (w.reader.get('roll', this.me) == null) w.put('roll', { node: this.me, name: this.components.config.name, joined: now }) })
    }
    this.lastTickAt = this.components.clock.now()
    this.timer = setInterval(() => { this.tick() }, this.cfg.tickMs)
    this.timer.unref()
    this.schedule()
  }

  /** graceful: this node leaves the grid: its VMs stop, its leases and roll entry go */
  async stop (opts: { graceful: boolean } = { graceful: true }): Promise<void> {
    this.running = false
    clearInterval(this.timer)
    clearTimeout(this.wakeTimer)
    clearTimeout(this.debounce)
    clearTimeout(this.reservedTimer)
    this.components.state.off('changed', this.onChange)
    this.components.membership.off('transition', this.onChange)
    while (this.stepping) await new Promise(resolve => setTimeout(resolve, 5))
    if (opts.graceful) {
      const vms = [...this.runs]
      await Promise.all(vms.map(async vm => await this.act(vm, 'stop', 'node leaving')))
      await this.components.state.write(w => {
        for (const l of w.reader.list('leases')) if (l.holder === this.me) w.remove('leases', l.vm)
        w.remove('roll', this.me)
      }, 'dvmm: leave').catch((err: Error) => { this.log.warn('could not record the leave', { err: err.message }) })
    }
    for (const d of new Set(Object.values(this.components.drivers))) d.off('exit', this.onDriverExit)
    await this.components.host?.unhandle(CONSOLE_PROTOCOL).catch(() => {})
  }

  /** The tail of a VM's console, from whichever node holds it. */
  async console (vmId: string): Promise<{ holder: string, console: string }> {
    const l = this.components.state.read().get('leases', vmId)?.value
    if (l == null) throw new ConflictError(`VM ${vmId} runs nowhere`, 'not_running')
    if (l.holder === this.me) return { holder: this.me, console: (await this.localConsole({ vm: vmId })).console }
    const host = this.components.host
    if (host == null) throw new ConflictError(`VM ${vmId} runs on another node, and this agent does not talk to other nodes`, 'elsewhere')
    let answer: unknown
    try {
      answer = await request(host, l.holder, CONSOLE_PROTOCOL, { vm: vmId }, { timeoutMs: 5000, maxAnswerBytes: CONSOLE_BYTES * 4 + 1024 })
    } catch (err) {
      throw new UnavailableError(`VM ${vmId}'s holder did not answer for its console: ${(err as Error).message}`, 'holder_unreachable')
    }
    const a = answer as { console?: unknown, error?: unknown } | null
    if (typeof a?.console === 'string') return { holder: l.holder, console: a.console }
    throw new ConflictError(`VM ${vmId}'s holder says: ${typeof a?.error === 'string' ? a.error : 'no console'}`, 'elsewhere')
  }

  /** This node's answer to a console request: only for a VM it holds. */
  private async localConsole (req: unknown): Promise<{ console: string }> {
    const vmId = (req as { vm?: unknown } | null)?.vm
    if (typeof vmId !== 'string' || vmId.length > 128) throw new Error('a console request is {"vm": id}')
    const reader = this.components.state.read()
    const vm = reader.get('vms', vmId)?.value
    if (vm == null) throw new Error(`no VM "${vmId}"`)
    if (reader.get('leases', vmId)?.value.holder !== this.me) throw new Error(`VM ${vmId} does not run on this node`)
    const driver = this.components.drivers[vm.spec.driver]
    if (driver == null) throw new Error(`driver ${vm.spec.driver} is not available on this node`)
    return { console: await driver.consoleTail(vmId, CONSOLE_BYTES) }
  }

  /** Queues a document update for the next step (one change for many updates). */
  enqueue (fn: (w: Writer) => void): void {
    this.pending.push(fn)
    this.schedule()
  }

  schedule (): void {
    if (!this.running || this.debounce != null) return
    // a step that took long (many waiting VMs) spaces the next: DVMM keeps to a fifth of the loop
    const gap = Math.max(this.cfg.debounceMs, this.lastStepMs * 4 - (this.components.clock.now() - this.lastStepEnd))
    this.debounce = setTimeout(() => {
      this.debounce = undefined
      void this.reconcile()
    }, gap)
  }

  async reconcile (): Promise<void> {
    if (this.stepping) { this.dirty = true; return }
    this.stepping = true
    try {
      do {
        this.dirty = false
        await this.step()
        this.lastStepEnd = this.components.clock.now()
      } while (this.dirty && this.running)
    } catch (err) {
      this.log.warn('decision step failed', { err: (err as Error).message })
    } finally {
      this.stepping = false
    }
  }

  private async flush (claims: Decisions['claims'] = [], release: Decisions['release'] = []): Promise<void> {
    const ops = this.pending.splice(0)
    if (ops.length === 0 && claims.length === 0 && release.length === 0) return
    try {
      await this.components.state.write(w => {
        for (const op of ops) {
          try { op(w) } catch (err) { this.log.debug('a queued update no longer applies', { err: (err as Error).message }) }
        }
        for (const c of claims) w.put('leases', { vm: c.vm, holder: this.me, epoch: c.epoch, cpu: c.cpu, memoryBytes: c.memoryBytes, status: 'claimed', ...(c.from != null ? { from: c.from } : {}) })
        for (const r of release) if (w.reader.get('leases', r.vm)?.value.holder === this.me) w.remove('leases', r.vm)
      }, 'dvmm')
    } catch (err) {
      if (claims.length === 0) this.pending.unshift(...ops)
      throw err
    }
  }

  private lastTickAt = 0
  /** after a stall of this agent: no claim and no start before this time (see stallMs) */
  private quarantineUntil = 0

  private tick (): void {
    const now = this.components.clock.now()
    const late = now - this.lastTickAt - this.cfg.tickMs
    this.lastTickAt = now
    if (late >= this.cfg.stallMs) {
      this.quarantineUntil = now + this.cfg.fenceTimeoutMs + this.cfg.takeoverMarginMs
      this.log.warn('this agent stalled: starting nothing until it has heard the grid again', { stalledMs: Math.round(late), until: new Date(this.quarantineUntil).toISOString() })
    }
    this.schedule()
  }

  private async step (): Promise<void> {
    this.metrics.reconciles.inc()
    const t0 = performance.now()
    const now = this.components.clock.now()
    const reader = this.components.state.read()
    const doc = docView(reader)
    const members = this.components.membership.members
    for (const m of members.values()) {
      // last heard of: its own beats, or once it went silent, the moment this node
      // learned so (its first suspicion); a death declared later does not move it on:
      // its watchdog or its own fence ended its VMs within the fence timeout of that
      if (m.state === 'alive') this.silentSince.delete(m.nodeId)
      else if (!this.silentSince.has(m.nodeId)) this.silentSince.set(m.nodeId, m.since)
      this.heard.set(m.nodeId, Math.max(this.heard.get(m.nodeId) ?? 0, m.lastSeen, this.silentSince.get(m.nodeId) ?? 0))
    }
    const nodes = nodeViews(doc, members, n => reader.labelsOf(n), this.me)
    const roll = new Set([...doc.roll.keys(), this.me])
    const aliveSeen = [...roll].filter(id => id === this.me || members.get(id)?.state === 'alive').length
    this.fence = fenced({ rollSize: roll.size, aliveSeen, lastMajorityAt: this.lastMajorityAt, now, fenceTimeoutMs: this.cfg.fenceTimeoutMs })
    // a stalled agent's view is stale: its watchdog killed its VMs, its leases may have moved
    if (now < this.quarantineUntil) this.fence = { ...this.fence, fenced: true, mayClaim: false, reason: `this agent stalled; waiting until ${new Date(this.quarantineUntil).toISOString()} to hear the grid again` }
    if (this.fence.fenced && this.runs.size > 0) this.log.warn('fenced: killing every VM', { reason: this.fence.reason })
    this.lastMajorityAt = this.fence.lastMajorityAt
    this.metrics.fenced.set(this.fence.fenced ? 1 : 0)
    this.watchClaims(doc, now)
    this.history.observe(new Map([...doc.leases].map(([k, l]) => [k, l.winner])), now, id => members.get(id)?.advert.name ?? doc.roll.get(id)?.name ?? id)
    const cap = members.get(this.me)?.advert.capacity ?? { cpu: 0, memoryBytes: 0 }
    const d = decide({
      me: this.me,
      now,
      doc,
      nodes,
      holderAlive: id => id === this.me || members.get(id)?.state === 'alive' || members.get(id)?.state === 'suspect',
      lastHeard: id => this.heard.get(id) ?? this.startedAt,
      fence: this.fence,
      runs: this.runs,
      busy: this.busy,
      claimedAt: this.claimedAt,
      conflictSeenAt: this.conflictSeenAt,
      unplacedSince: this.unplacedSince,
      capacity: cap,
      cfg: { settleMs: this.cfg.settleMs, fenceTimeoutMs: this.cfg.fenceTimeoutMs, takeoverMarginMs: this.cfg.takeoverMarginMs, strategy: this.cfg.strategy }
    })
    this.lastStepMs = performance.now() - t0 // the CPU part of the step (not the write's fsync)
    const waiting = new Set(d.unplaced)
    for (const vm of waiting) if (!this.unplacedSince.has(vm)) this.unplacedSince.set(vm, now)
    for (const vm of this.unplacedSince.keys()) if (!waiting.has(vm)) this.unplacedSince.delete(vm)
    if (d.refused.length > 0) this.metrics.claimsRefused.inc(d.refused.length)
    // one change per step: queued status updates, claims and releases together
    if (d.claims.length > 0 || d.release.length > 0 || this.pending.length > 0) {
      await this.flush(d.claims, d.release)
      const at = this.components.clock.now()
      // what the others hold, once for all claims of the step (kept for vm show)
      const usage = d.claims.length > 0 ? usageOf(holdings(doc, waiting)) : undefined
      for (const c of d.claims) {
        this.claimedAt.set(c.vm, at)
        this.metrics.claims.inc({ kind: c.from != null ? 'takeover' : 'place' })
        const vm = doc.vms.get(c.vm)
        if (vm != null) this.history.decisions.set(c.vm, { at, ranking: rank(demandOf(vm), nodes, usage!, { strategy: this.cfg.strategy }) })
      }
      if (d.claims.length > 0) this.dirty = true // settle timers start now
    }
    for (const k of d.kill) void this.act(k.vm, 'kill', k.why)
    for (const s of d.stop) void this.act(s.vm, 'stop', s.why)
    for (const vm of d.start) void this.startVm(vm, doc)
    this.publishReserved(doc)
    if (Number.isFinite(d.wakeInMs) && this.running) {
      clearTimeout(this.wakeTimer)
      this.wakeTimer = setTimeout(() => { this.schedule() }, d.wakeInMs)
    }
  }

  /** Notices conflicting claims (they restart the settle window) and lost ones. */
  private watchClaims (doc: DocView, now: number): void {
    for (const [vm, at] of this.claimedAt) {
      const l = doc.leases.get(vm)
      const holders = l?.claims.map(c => `${c.holder}@${c.epoch}`).sort().join() ?? ''
      if (l != null && l.claims.length > 1 && holders !== this.claimHolders.get(vm)) this.conflictSeenAt.set(vm, now)
      this.claimHolders.set(vm, holders)
      if (l == null || l.winner.holder !== this.me) {
        this.metrics.claimsLost.inc()
        this.history.add(vm, { at: now, event: 'lost-claim', detail: l == null ? 'lease removed' : `to ${l.winner.holder} (epoch ${l.winner.epoch})` })
        this.forgetClaim(vm)
      } else if (l.winner.status === 'running' && now - at > this.cfg.settleMs) {
        this.forgetClaim(vm)
      }
    }
  }

  private forgetClaim (vm: string): void {
    this.claimedAt.delete(vm)
    this.conflictSeenAt.delete(vm)
    this.claimHolders.delete(vm)
  }

  private updateLease (vm: string, patch: Partial<Lease>): void {
    this.enqueue(w => {
      if (w.reader.get('leases', vm)?.value.holder !== this.me) return
      w.update('leases', vm, patch)
    })
  }

  private async startVm (id: string, doc: DocView): Promise<void> {
    const vm = doc.vms.get(id)
    if (vm == null || this.busy.has(id)) return
    const driver = this.components.drivers[vm.spec.driver]
    if (driver == null) {
      this.updateLease(id, { status: 'failed', reason: `driver ${vm.spec.driver} is not available on this node` })
      return
    }
    this.busy.add(id)
    try {
      const old = await driver.inspect(id)
      if (old != null && (old.state === 'stopped' || old.state === 'failed')) await driver.remove(id)
      const disks = await this.attachVolumes(vm, doc.leases.get(id)?.winner.epoch ?? 1)
      const info = await driver.start(driverSpec(vm, this.components.network?.overlayOf(id), disks))
      this.runs.add(id)
      this.noteInterface(info, driver)
      this.metrics.starts.inc({ result: 'ok' })
      this.updateLease(id, { status: 'running', reason: `started by ${this.components.config.name}` })
    } catch (err) {
      this.metrics.starts.inc({ result: 'failed' })
      this.log.warn('VM failed to start', { vm: id, err: (err as Error).message })
      this.updateLease(id, { status: 'failed', reason: `driver ${driver.name}: ${(err as Error).message}` })
    } finally {
      this.busy.delete(id)
      this.schedule()
    }
  }

  /** Stops (gracefully, then releases the lease) or kills one VM this node runs. */
  private async act (vm: string, how: 'stop' | 'kill', why: string): Promise<void> {
    if (this.busy.has(vm)) return
    const driver = await this.driverRunning(vm)
    this.busy.add(vm)
    this.expected.add(vm)
    try {
      if (driver != null) {
        if (how === 'kill') await driver.kill(vm)
        else await driver.stop(vm, this.cfg.stopGraceMs)
        await driver.remove(vm).catch(() => {})
      }
      this.runs.delete(vm)
      this.forgetInterface(vm)
      this.log.info(how === 'kill' ? 'killed a VM' : 'stopped a VM', { vm, why })
      if (how === 'kill') this.metrics.kills.inc({ why: why.startsWith('fenced') ? 'fenced' : 'lost' })
      this.history.add(vm, { at: this.components.clock.now(), event: how === 'kill' ? 'killed' : 'stopped', node: this.components.config.name, detail: why })
      if (how === 'stop') this.enqueue(w => { if (w.reader.get('leases', vm)?.value.holder === this.me) w.remove('leases', vm) })
    } catch (err) {
      this.log.warn(`could not ${how} a VM`, { vm, err: (err as Error).message })
    } finally {
      this.busy.delete(vm)
      this.expected.delete(vm)
      this.schedule()
    }
  }

  /**
   * The VM's volumes as NBD disks served by this node's agent. Before the VM runs,
   * each volume's writer epoch goes past every earlier writer's (at least the VM's
   * lease epoch): replicas refuse the writes of a previous holder that still runs.
   */
  private async attachVolumes (vm: Vm, leaseEpoch: number): Promise<Array<{ uri: string }>> {
    const ids = vm.spec.volumes
    if (ids.length === 0) return []
    const store = this.components.volumes
    if (store == null) throw new Error('the volume store does not run on this node')
    const disks = ids.map(v => {
      const uri = store.uriOf(v)
      if (uri == null) throw new Error(`volume ${v} does not exist`)
      return { uri }
    })
    await this.components.state.write(w => {
      for (const v of ids) {
        const cur = w.reader.get('volumes', v)?.value
        if (cur == null) throw new Error(`volume ${v} does not exist`)
        w.update('volumes', v, { epoch: Math.max((cur.epoch ?? 1) + 1, leaseEpoch) })
      }
    }, `dvmm: ${vm.id} takes its volumes`)
    return disks
  }

  private noteInterface (info: VmInfo, driver: VmDriver): void {
    if (info.network == null) return
    this.ifaces.set(info.id, { hostIf: info.network.hostIf, driver })
    this.components.network?.interfacesChanged()
  }

  private forgetInterface (vm: string): void {
    if (this.ifaces.delete(vm)) this.components.network?.interfacesChanged()
  }

  addressOf (vm: string): string | null {
    return this.components.network?.overlayOf(vm)?.address ?? null
  }

  async runtimeOf (vm: string): Promise<VmInfo | null> {
    const d = this.ifaces.get(vm)?.driver ?? await this.driverRunning(vm)
    return (await d?.inspect(vm)) ?? null
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

  private async driverRunning (vm: string): Promise<VmDriver | undefined> {
    for (const d of new Set(Object.values(this.components.drivers))) if ((await d.inspect(vm)) != null) return d
    return undefined
  }

  /** A VM's process ended: unless this node asked, a crash; the restart rule decides. */
  private exited (e: { id: string } & VmExit): void {
    if (!this.runs.has(e.id) || this.expected.has(e.id)) return
    this.runs.delete(e.id)
    this.forgetInterface(e.id)
    const l = this.components.state.read().get('leases', e.id)?.value
    const vm = this.components.state.read().get('vms', e.id)?.value
    if (l == null || l.holder !== this.me || vm == null) return
    this.metrics.crashes.inc()
    const detail = `${e.reason}${e.code != null ? ` (code ${e.code})` : ''}${e.signal != null ? ` (${e.signal})` : ''}`
    const d = onExit(l.crashes ?? [], this.components.clock.now(), { policy: vm.spec.restart, clean: e.reason === 'exited', detail })
    this.log.info('VM exited', { vm: e.id, detail, action: d.action })
    // while the update is queued the step would restart it: keep it busy until written
    if (d.action === 'stop') this.busy.add(e.id)
    this.enqueue(w => {
      this.busy.delete(e.id)
      if (w.reader.get('leases', e.id)?.value.holder !== this.me) return
      w.update('leases', e.id, { crashes: d.crashes, status: d.action === 'restart' ? 'starting' : 'stopped', reason: d.reason })
    })
  }

  private publishReserved (doc: DocView): void {
    const r = reservedBy(this.me, [...doc.leases.values()].map(l => l.claims))
    const held = [...doc.leases.values()].filter(l => l.winner.holder === this.me).length
    this.metrics.held.set(held)
    this.metrics.reservedCpu.set(r.cpu)
    this.metrics.reservedMemory.set(r.memoryBytes)
    const key = `${r.cpu}/${r.memoryBytes}`
    if (key === this.lastReserved) return
    this.lastReserved = key
    this.reservedNow = { cpu: r.cpu, memoryBytes: r.memoryBytes, diskBytes: 0 }
    // every new figure is a signed advert that every member checks: while VMs are
    // placed in bulk (a change every step) at most one per RESERVED_EVERY_MS goes
    // out, and the last one always does. Placement reads the leases, not the adverts
    if (this.reservedTimer != null) return
    const wait = Math.max(0, this.reservedAt + RESERVED_EVERY_MS - this.components.clock.now())
    this.reservedTimer = setTimeout(() => {
      this.reservedTimer = undefined
      this.reservedAt = this.components.clock.now()
      if (this.reservedNow != null && this.running) this.components.onReserved(this.reservedNow)
    }, wait)
  }

  private reservedNow?: Resources
  private reservedAt = -Infinity
  private reservedTimer?: NodeJS.Timeout

  /** AppLogic's "HA ok": could every VM with a lease be placed again if any one node failed? */
  ha (): HaReport {
    const reader = this.components.state.read()
    const doc = docView(reader)
    const nodes = nodeViews(doc, this.components.membership.members, n => reader.labelsOf(n), this.me).filter(n => n.alive)
    const demands = new Map([...doc.vms.values()].filter(v => doc.leases.has(v.id)).map(v => [v.id, demandOf(v)]))
    return haCheck(demands, nodes, holdings(doc), { strategy: this.cfg.strategy })
  }
}
