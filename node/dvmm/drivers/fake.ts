// The fake driver: VMs that live in memory, for placement tests of many agents in one
// process. It keeps the driver contract (the compliance suite runs it too): a FakeNode
// stands for one server, so a new driver instance on the same FakeNode finds the VMs a
// previous "agent run" left, as the real drivers find theirs in their run dirs.
//
// A fake VM's boot command says how its guest behaves:
//   ['fake:run']                 runs until stopped
//   ['fake:exit', CODE, MS]      exits by itself with CODE after MS
//   ['fake:reboot', MS]          its guest reboots after MS (as a qemu guest's reset under -no-reboot: rebooted)
//   ['fake:panic', MS]           its guest's kernel panics after MS (as a qemu guest's: crashed with code 0, and why)
//   ['fake:ignore-stop']         ignores graceful stop (only kill ends it)
import { EventEmitter } from 'node:events'
import { classifyExit, earlierConsole, EARLIER_CONSOLE_BYTES, sleep, validateSpec } from './common.ts'
import { readConsole, type ConsoleRead, type ConsoleSince } from './console-read.ts'
import { DriverError, type DriverEvents, type DriverVmSpec, type ExitReason, type ProbeResult, type VmDriver, type VmInfo, type VmState } from './types.ts'

export const FAKE_READY_LINE = 'fake guest ready'

interface FakeVm {
  spec: DriverVmSpec
  state: VmState
  pid: number
  startedAt: number
  console: string
  exit?: VmInfo['exit']
  error?: string
  timer?: NodeJS.Timeout
  ignoresStop: boolean
  onExit?: (code: number | null, signal: string | null) => void
  /** its guest reset itself (fake:reboot), or its kernel panicked (fake:panic) */
  rebooting?: true
  panicked?: true
}

/** One simulated server: its VMs outlive driver instances, as real processes outlive agents. */
export class FakeNode {
  readonly vms = new Map<string, FakeVm>()
  nextPid = 1000
  /** Total VMs ever started here (for tests that count restarts). */
  starts = 0
  /** The newest driver instance on this node: it sees the exits (an agent restart hands over). */
  owner?: FakeDriver
  /** per VM id, how many of its next starts here fail (a start that fails for a moment) */
  readonly failStarts = new Map<string, number>()
}

export interface FakeDriverComponents { clock: { now: () => number } }
export interface FakeDriverInit { node?: FakeNode, probe?: ProbeResult }

export class FakeDriver extends EventEmitter<DriverEvents> implements VmDriver {
  readonly name = 'fake' as const
  readonly node: FakeNode
  private readonly clock: { now: () => number }
  private readonly probeResult: ProbeResult
  private closed = false

  constructor (components: FakeDriverComponents, init: FakeDriverInit = {}) {
    super()
    this.clock = components.clock
    this.node = init.node ?? new FakeNode()
    this.probeResult = init.probe ?? { ok: true, detail: 'fake driver: VMs in memory' }
    this.node.owner = this
  }

  async probe (): Promise<ProbeResult> { return this.probeResult }

  async start (raw: DriverVmSpec): Promise<VmInfo> {
    const spec = validateSpec(raw, ['command', 'volume'])
    // a guest booting its first disk (the fake stands for qemu too) runs as fake:run does
    const [cmd, a, b] = spec.boot.kind === 'volume' ? ['fake:run'] : spec.boot.kind === 'command' ? spec.boot.command : []
    if (cmd !== 'fake:run' && cmd !== 'fake:exit' && cmd !== 'fake:reboot' && cmd !== 'fake:panic' && cmd !== 'fake:ignore-stop') throw new DriverError('bad-spec', `boot.command[0]: "${String(cmd)}" is not a fake guest (fake:run, fake:exit, fake:reboot, fake:panic, fake:ignore-stop)`, 'boot.command[0]')
    if (!this.probeResult.ok) throw new DriverError('unsupported', `fake driver cannot run VMs here: ${this.probeResult.detail}`)
    const old = this.node.vms.get(spec.id)
    if (old !== undefined && (old.state === 'starting' || old.state === 'running' || old.state === 'stopping')) throw new DriverError('exists', `VM ${spec.id} is already ${old.state} on this node`, 'id')
    const fails = this.node.failStarts.get(spec.id) ?? 0
    if (fails > 0) {
      this.node.failStarts.set(spec.id, fails - 1)
      // as a host driver does: the failed run stays, `failed`, until removed
      const error = `VM ${spec.id}: the guest did not come up (a failure the test asked for)`
      this.node.vms.set(spec.id, { spec, state: 'failed', pid: this.node.nextPid++, startedAt: this.clock.now(), console: '', error, ignoresStop: false })
      throw new DriverError('start-failed', error)
    }
    // as a host driver does: the run before's console starts the new one's
    const was = Buffer.from(old?.console ?? '')
    const before = old === undefined ? '' : earlierConsole({ tail: was.subarray(-EARLIER_CONSOLE_BYTES), cut: was.length > EARLIER_CONSOLE_BYTES }, old, spec, this.clock.now()).toString('utf8')
    const vm: FakeVm = { spec, state: 'starting', pid: this.node.nextPid++, startedAt: this.clock.now(), console: before, ignoresStop: cmd === 'fake:ignore-stop' }
    this.node.vms.set(spec.id, vm)
    this.node.starts++
    this.emit('state', { id: spec.id, state: 'starting', at: this.clock.now() })
    vm.console += `${FAKE_READY_LINE} ${spec.id}\n`
    vm.onExit = (code, signal) => { (this.node.owner ?? this).finish(spec.id, vm, code, signal) }
    if (cmd === 'fake:exit') vm.timer = setTimeout(() => vm.onExit?.(Number(a ?? 0), null), Number(b ?? 0))
    if (cmd === 'fake:reboot') vm.timer = setTimeout(() => { vm.rebooting = true; vm.onExit?.(0, null) }, Number(a ?? 0))
    if (cmd === 'fake:panic') vm.timer = setTimeout(() => { vm.panicked = true; vm.onExit?.(0, null) }, Number(a ?? 0))
    this.set(spec.id, vm, 'running')
    return this.info(spec.id, vm)
  }

  async stop (id: string, graceMs: number): Promise<VmInfo> {
    const vm = this.must(id)
    if (vm.state === 'stopped' || vm.state === 'failed') return this.info(id, vm)
    vm.exit = undefined
    this.set(id, vm, 'stopping')
    if (!vm.ignoresStop) {
      vm.onExit?.(143, 'SIGTERM')
      return this.info(id, vm)
    }
    // setTimeout may fire a millisecond before Date.now() says the time is up: wait by the clock
    const until = Date.now() + graceMs
    while (Date.now() < until) await sleep(until - Date.now())
    if (vm.state === 'stopping') this.end(id, vm, null, 'SIGKILL', 'killed')
    return this.info(id, vm)
  }

  async kill (id: string): Promise<VmInfo> {
    const vm = this.must(id)
    if (vm.state !== 'stopped' && vm.state !== 'failed') this.end(id, vm, null, 'SIGKILL', 'killed')
    return this.info(id, vm)
  }

  /** As the fencing watchdog does from outside the agent (at wall time `at`): kills every live VM of this node, marked so. */
  killByWatchdog (at: number): void {
    for (const [id, vm] of this.node.vms) {
      if (vm.state === 'stopped' || vm.state === 'failed') continue
      vm.error = `killed by the fencing watchdog at ${new Date(at).toISOString()}`
      this.end(id, vm, null, 'SIGKILL', 'killed', at)
    }
  }

  async inspect (id: string): Promise<VmInfo | undefined> {
    const vm = this.node.vms.get(id)
    return vm === undefined ? undefined : this.info(id, vm)
  }

  async list (): Promise<VmInfo[]> {
    return [...this.node.vms.entries()].map(([id, vm]) => this.info(id, vm))
  }

  async consoleTail (id: string, bytes = 16384): Promise<string> {
    return this.must(id).console.slice(-bytes)
  }

  async consoleRead (id: string, bytes: number, since?: ConsoleSince): Promise<ConsoleRead> {
    const vm = this.must(id)
    const log = Buffer.from(vm.console)
    return readConsole(from => ({ tail: log.subarray(log.length - Math.max(0, Math.min(bytes, log.length - from))), end: log.length }), vm.startedAt, since)
  }

  async remove (id: string): Promise<void> {
    const vm = this.must(id)
    if (vm.state !== 'stopped' && vm.state !== 'failed') throw new DriverError('exists', `VM ${id} is ${vm.state}; stop it first`)
    this.node.vms.delete(id)
  }

  async close (): Promise<void> {
    this.closed = true
  }

  protected finish (id: string, vm: FakeVm, code: number | null, signal: string | null): void {
    if (vm.state === 'stopped' || vm.state === 'failed') return
    const exit = classifyExit({ code, signal, oomKills: 0, stopRequested: vm.state === 'stopping', killRequested: false, now: this.clock.now() })
    const reason = exit.reason !== 'exited' ? exit.reason : vm.rebooting === true ? 'rebooted' : vm.panicked === true ? 'crashed' : 'exited'
    this.end(id, vm, code, signal, reason, undefined, vm.panicked === true && exit.reason === 'exited' ? `its guest's kernel panicked (vgrid vm console ${id} shows why)` : undefined)
  }

  private end (id: string, vm: FakeVm, code: number | null, signal: string | null, reason: ExitReason, watchdogKillAt?: number, why?: string): void {
    clearTimeout(vm.timer)
    vm.exit = { code, signal, reason, at: this.clock.now(), startedAt: vm.startedAt, ...(watchdogKillAt !== undefined ? { watchdogKillAt } : {}), ...(why !== undefined ? { why } : {}) }
    const failed = reason === 'crashed' || reason === 'oom-killed' || reason === 'lost'
    if (failed) vm.error = why ?? (reason === 'crashed' ? `crashed (code ${String(code)})` : reason)
    // a closed driver (a dead agent) sees nothing; the next one finds the result in list()
    if (this.closed) { vm.state = failed ? 'failed' : 'stopped'; return }
    this.set(id, vm, failed ? 'failed' : 'stopped')
    this.emit('exit', { id, ...vm.exit })
  }

  private set (id: string, vm: FakeVm, state: VmState): void {
    vm.state = state
    if (!this.closed) this.emit('state', { id, state, at: this.clock.now() })
  }

  private must (id: string): FakeVm {
    const vm = this.node.vms.get(id)
    if (vm === undefined) throw new DriverError('not-found', `no fake VM ${id} on this node`, 'id')
    return vm
  }

  private info (id: string, vm: FakeVm): VmInfo {
    return { id, driver: 'fake', state: vm.state, pid: vm.pid, startedAt: vm.startedAt, exit: vm.exit, error: vm.error, vcpus: vm.spec.vcpus, memoryMiB: vm.spec.memoryMiB }
  }
}
