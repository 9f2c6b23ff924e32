// VM consoles: the tail of a VM's console log from whichever node holds its lease,
// answered over `/vgrid/dvmm/console/1.0.0` ({vm, from?, run?} -> {console, start,
// size, run} or {error}) for a VM this node holds and asked of the holder for one
// elsewhere. A VM stopped on request keeps its lease with the node that last ran it
// (`stopped`), and that node keeps the ended run on its driver, so the last console is
// still read from any node; the ended run goes once the lease is no longer this node's
// (started elsewhere, the VM removed).
import type { Reader, Vm } from '../../crdt/index.ts'
import type { MemberTable } from '../../protocol/membership.ts'
import { ConflictError, UnavailableError } from '../errors.ts'
import type { Logger } from '../log.ts'
import { request, serve, type RequestHost } from '../p2p/request.ts'
import type { ConsoleSince } from './drivers/console-read.ts'
import { DriverError, type VmDriver } from './drivers/types.ts'
import type { DocView } from './view.ts'

/** `/vgrid/dvmm/console/1.0.0`: the tail of a VM's console log or what came past `from` in run `run`, asked of its holder ({vm, from?, run?} -> {console, start, size, run} or {error}) */
export const CONSOLE_PROTOCOL = '/vgrid/dvmm/console/1.0.0'
const CONSOLE_BYTES = 64 * 1024

/** a node's answer: the text is the log's bytes [start, size) of the run that began at `run` (older agents: the tail, no start, maybe no size) */
export interface ConsoleAnswer { console: string, start?: number, size?: number, run?: number }

const offset = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0

export interface VmConsolesComponents {
  peerId: string
  log: Logger
  state: { read: () => Reader }
  drivers: Partial<Record<Vm['spec']['driver'], VmDriver>>
  /** libp2p, to answer and ask for consoles of VMs on other nodes */
  host?: RequestHost
  /** who is alive, for a console asked of another node (absent: every holder is asked) */
  membership?: { readonly members: MemberTable }
  /** a run of the VM may be under way here (running, starting, being stopped): its run is not removed */
  active: (vm: string) => boolean
}

/** a run removed meanwhile (sweep) is gone as asked */
export function notFoundIsGone (err: unknown): void {
  if (!(err instanceof DriverError && err.code === 'not-found')) throw err
}

export class VmConsoles {
  private readonly c: VmConsolesComponents
  /** ended runs the drivers keep (a VM's last console): removed once its lease is not this node's (sweep) */
  private readonly ended = new Set<string>()

  constructor (components: VmConsolesComponents) {
    this.c = components
  }

  /** Answers console requests of other nodes. */
  async serve (): Promise<void> {
    if (this.c.host != null) await serve(this.c.host, CONSOLE_PROTOCOL, async req => await this.local(req))
  }

  async unserve (): Promise<void> {
    await this.c.host?.unhandle(CONSOLE_PROTOCOL).catch(() => {})
  }

  /** A run of `vm` ended here and its driver keeps it (its console), until sweep removes it. */
  keep (vm: string): void { this.ended.add(vm) }

  /** A new run of `vm` starts here: it removes the old one itself. */
  drop (vm: string): void { this.ended.delete(vm) }

  /** Removes the ended runs of VMs whose lease is no longer this node's: started elsewhere, removed. */
  sweep (doc: DocView): void {
    for (const vm of this.ended) {
      if (doc.leases.get(vm)?.winner.holder === this.c.peerId) continue
      this.ended.delete(vm)
      void this.remove(vm)
    }
  }

  private async remove (vm: string): Promise<void> {
    for (const d of new Set(Object.values(this.c.drivers))) {
      try {
        const info = await d.inspect(vm)
        // a start here meanwhile removes the old run itself
        if (info == null || this.c.active(vm)) continue
        if (info.state === 'stopped' || info.state === 'failed') await d.remove(vm)
      } catch (err) {
        if (!(err instanceof DriverError && err.code === 'not-found')) this.c.log.warn('could not remove the ended run of a VM', { vm, driver: d.name, err: (err as Error).message })
      }
    }
  }

  /**
   * The tail of a VM's console, from whichever node holds its lease: where it runs, or
   * for a VM stopped on request, the node that last ran it (its lease stays there,
   * `stopped`). A holder that is not alive is named in a 409 (`holder_gone`); one alive
   * that does not answer is a 503 (`holder_unreachable`), also naming it.
   */
  async of (vmId: string, since?: ConsoleSince): Promise<{ holder: string } & ConsoleAnswer> {
    const reader = this.c.state.read()
    const l = reader.get('leases', vmId)?.value
    if (l == null) {
      const stopped = reader.get('vms', vmId)?.value.desired === 'stopped'
      throw new ConflictError(stopped ? `VM ${vmId} is stopped and no node holds its lease: it never ran, or the node that ran it left the grid, so no console of it is kept` : `VM ${vmId} runs nowhere`, 'not_running')
    }
    // a VM whose start failed before its driver made it (a bad command, a missing
    // kernel) has no console: say so with why it failed, not as a driver fault
    const none = (why: string): ConflictError => new ConflictError(`VM ${vmId} has no console${l.status === 'failed' && l.reason != null ? `: it failed before it ran (${l.reason})` : ''}: ${why}`, 'no_console')
    if (l.holder === this.c.peerId) {
      try {
        return { holder: this.c.peerId, ...await this.local({ vm: vmId, ...since }) }
      } catch (err) {
        if (err instanceof DriverError && err.code === 'not-found') throw none(err.message)
        throw err
      }
    }
    const name = this.nodeName(l.holder, reader)
    const what = l.status === 'stopped' ? `VM ${vmId} is stopped; its last console is on node ${name} (which last ran it), which` : `VM ${vmId} runs on node ${name}, which`
    const state = this.c.membership?.members.get(l.holder)?.state
    if (this.c.membership != null && state !== 'alive' && state !== 'suspect') {
      // an agent stopped for a restart says so in its roll entry (bb36 read "which is left")
      const restarting = reader.get('roll', l.holder)?.value.restart
      const how = restarting != null && restarting.back !== true ? 'away for a restart of its agent' : state ?? 'not a member this node knows'
      throw new ConflictError(`${what} is ${how}: its console cannot be read until that node is back`, 'holder_gone')
    }
    const host = this.c.host
    if (host == null) throw new ConflictError(`${what} is another node, and this agent does not talk to other nodes`, 'elsewhere')
    let answer: unknown
    try {
      answer = await request(host, l.holder, CONSOLE_PROTOCOL, { vm: vmId, ...since }, { timeoutMs: 5000, maxAnswerBytes: CONSOLE_BYTES * 4 + 1024 })
    } catch (err) {
      // libp2p's words for a node not reached ("All multiaddr dials failed") said as what they mean (bb36)
      const msg = (err as Error).message
      const unreached = /dials failed|ECONNREFUSED|EHOSTUNREACH|ETIMEDOUT|no valid addresses/i.test(msg)
      throw new UnavailableError(unreached ? `${what} could not be reached for the console (its agent may have just stopped or died: membership has not found it dead yet): ${msg}` : `${what} did not answer for the console: ${msg}`, 'holder_unreachable')
    }
    const a = answer as { console?: unknown, start?: unknown, size?: unknown, run?: unknown, error?: unknown } | null
    // a holder of an earlier release sends no size, or no start (it answers the tail, whatever `since`)
    if (typeof a?.console === 'string') return { holder: l.holder, console: a.console, ...(offset(a.start) ? { start: a.start } : {}), ...(offset(a.size) ? { size: a.size } : {}), ...(offset(a.run) ? { run: a.run } : {}) }
    const said = typeof a?.error === 'string' ? a.error : 'no console'
    // the driver there has no such VM (it never ran): no console; anything else is the holder's answer
    if (/^no \S+ VM \S+ on this node$/.test(said)) throw none(`its holder ${name} says: ${said}`)
    throw new ConflictError(`VM ${vmId}'s holder ${name} says: ${said}`, 'elsewhere')
  }

  /** a node's name as this node knows it: its advert, else its roll entry */
  private nodeName (id: string, reader: Reader): string {
    return this.c.membership?.members.get(id)?.advert.name ?? reader.get('roll', id)?.value.name ?? id
  }

  /** This node's answer to a console request: only for a VM it holds (runs, or ran last and keeps stopped). */
  private async local (req: unknown): Promise<ConsoleAnswer> {
    const { vm: vmId, from, run } = (req ?? {}) as { vm?: unknown, from?: unknown, run?: unknown }
    if (typeof vmId !== 'string' || vmId.length > 128) throw new Error('a console request is {"vm": id, "from"?: offset, "run"?: start}')
    if (from !== undefined && !offset(from)) throw new Error(`a console request's "from" is an offset in the log (a whole number, 0 or more), not ${JSON.stringify(from)}`)
    if (run !== undefined && run !== null && !offset(run)) throw new Error(`a console request's "run" is a run's start (ms since the epoch), not ${JSON.stringify(run)}`)
    const reader = this.c.state.read()
    const vm = reader.get('vms', vmId)?.value
    if (vm == null) throw new Error(`no VM "${vmId}"`)
    if (reader.get('leases', vmId)?.value.holder !== this.c.peerId) throw new Error(`VM ${vmId} does not run on this node`)
    const driver = this.c.drivers[vm.spec.driver]
    if (driver == null) throw new Error(`driver ${vm.spec.driver} is not available on this node`)
    // the tail with the offset it ends at, from one read (rv45: a size read apart from the
    // tail made a follower drop some output and print some twice), and the run it is of
    if (driver.consoleRead != null) {
      const r = await driver.consoleRead(vmId, CONSOLE_BYTES, from !== undefined ? { from, run: run ?? null } : undefined)
      return { console: r.text, start: r.start, size: r.size, ...(r.run != null ? { run: r.run } : {}) }
    }
    return { console: await driver.consoleTail(vmId, CONSOLE_BYTES) }
  }
}
