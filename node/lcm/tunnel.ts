// This agent's end of the tunnels: its WireGuard interface and keypair, its overlay
// address on it, the peers set on it, and what it advertises (key and endpoint). The
// LCM service (service.ts) decides what should be; this part makes it so.
// WireGuard failing to start is reported (log, status, advert), never stops the agent,
// and is tried again by itself, less often each time.
import { networkInterfaces } from 'node:os'
import { readFile } from 'node:fs/promises'
import { Counter, type Registry } from 'prom-client'
import type { Logger } from '../log.ts'
import { ip } from '../netns/netns.ts'
import { loadOrCreateKeypair, WgInterface, type Backend, type Keypair } from './wireguard.ts'
import { diffPeers, type Addressing, type PeerPlan } from './plan.ts'
import type { OverlayPrefix } from './overlay.ts'
import { addressKey, firstAddress } from './host-addresses.ts'
import { Condition } from './condition.ts'
import { interfaceRepairs, procRoutesOf } from './interface-check.ts'

export interface WireguardAdvert { publicKey: string, endpoint: string }

export interface TunnelComponents {
  log: Logger
  registry: Registry
  dataDir: string
  peerId: string
  /** the agent puts this in its advert's `wireguard` slot and re-advertises */
  onAdvert: (wg: WireguardAdvert | null) => void
  /** plan and apply again soon (after a failed start, or when wireguard-go exited) */
  schedule: (delayMs: number) => void
}

export interface TunnelInit {
  ifname: string
  prefix: OverlayPrefix
  port: number
  /** the address peers reach this host at; default: its first non-loopback IPv4 */
  endpointHost?: string
  backend?: Backend
}

/** after a failed start: the first retry, and the longest wait between retries */
export const RETRY_MIN_MS = 1000
export const RETRY_MAX_MS = 30_000
/** WireGuard that cannot start is tried again at least this often: a port freed, the overlay is back within seconds (a tester waited 28 s), and VMs with connections move off after 30 s down (dvmm/overlay-moves.ts) */
const INTERFACE_RETRY_MAX_MS = 10_000

export class Tunnel {
  private readonly c: TunnelComponents
  private readonly init: TunnelInit
  private keypair: Keypair | null = null
  private wgIf: WgInterface | null = null
  /** why WireGuard is not running */
  readonly down = new Condition()
  /** while the interface cannot be made: the next try, and the wait before the one after */
  private ifTimer?: NodeJS.Timeout
  private ifRetryMs = RETRY_MIN_MS
  /** what the agent was last told to advertise (undefined: nothing yet) */
  private advertised: WireguardAdvert | null | undefined
  private advertisedDown: string | null = null
  private endpointNow: string | null = null
  private addressNow: string | null = null
  /** the peers set on the interface: public key -> endpoint */
  private readonly applied = new Map<string, string | null>()
  /** when each of them was added to the interface (ms since the epoch, the scale of `wg show`'s handshake times) */
  private readonly added = new Map<string, number>()
  private readonly startFailures: Counter
  private running = false

  constructor (components: TunnelComponents, init: TunnelInit) {
    this.c = components
    this.init = init
    this.startFailures = new Counter({ name: 'vgrid_lcm_wireguard_start_failures_total', help: 'Tries to make the WireGuard interface that failed (the LCM status says the last cause)', registers: [components.registry] })
  }

  /** the interface while it runs */
  get wg (): WgInterface | null { return this.wgIf }
  get publicKey (): string | null { return this.keypair?.publicKey ?? null }
  get endpoint (): string | null { return this.endpointNow }
  get address (): string | null { return this.addressNow }
  get backend (): Backend | null { return this.wgIf?.backend ?? null }

  start (): void { this.running = true }

  /**
   * Makes the interface when there is none (it never came up, or wireguard-go exited).
   * The status, the log and the advert follow the outcome both ways, each told once per
   * change, not on every try; while it cannot be made the rest of the plan still applies,
   * and it is tried again by itself, less often each time. Throws only if the dead one
   * cannot be removed.
   */
  async ensure (): Promise<void> {
    if (this.wgIf?.alive === true) return
    clearTimeout(this.ifTimer)
    if (this.wgIf != null) {
      await this.wgIf.destroy()
      this.wgIf = null
      this.addressNow = null
    }
    try {
      this.keypair ??= await loadOrCreateKeypair(this.c.dataDir)
      this.endpointNow = this.detectEndpoint()
      await this.bringUp()
    } catch (err) {
      this.wentDown(err as Error)
      return
    }
    const was = this.down.value
    this.down.set(null)
    this.ifRetryMs = RETRY_MIN_MS
    this.c.log.info(was == null ? 'WireGuard up' : 'WireGuard up again', { interface: this.init.ifname, backend: this.wgIf!.backend, endpoint: this.endpointNow, publicKey: this.keypair.publicKey })
    if (this.endpointNow != null) this.advertise({ publicKey: this.keypair.publicKey, endpoint: this.endpointNow })
    else {
      this.advertise(null)
      this.c.log.warn('no IPv4 address to advertise as the WireGuard endpoint: peers cannot reach this node until it has one')
    }
  }

  private wentDown (err: Error): void {
    const error = err.message.startsWith('WireGuard cannot start') ? err.message : `WireGuard cannot start: ${err.message}`
    this.startFailures.inc()
    if (this.down.set(error)) this.c.log.error('WireGuard cannot start; connections to other nodes are down, everything else runs', { error })
    // peers are told there is no tunnel to this node, until there is one again
    this.advertise(null)
    if (!this.running) return
    this.ifTimer = setTimeout(() => { this.c.schedule(0) }, this.ifRetryMs)
    this.ifRetryMs = Math.min(this.ifRetryMs * 2, INTERFACE_RETRY_MAX_MS)
  }

  /**
   * Tells the agent what to advertise, when it differs from what it was told last: the
   * tunnel, and why the overlay is down (the advert's overlayDown, read then: a new
   * cause, or up without an endpoint, must not leave the old one in it).
   */
  private advertise (wg: WireguardAdvert | null): void {
    const last = this.advertised
    if (last !== undefined && last?.publicKey === wg?.publicKey && last?.endpoint === wg?.endpoint && this.advertisedDown === this.down.value) return
    this.advertised = wg
    this.advertisedDown = this.down.value
    this.c.onAdvert(wg)
  }

  /** Makes the interface and its route; if wireguard-go ever exits under us, the next plan makes it again. */
  private async bringUp (): Promise<void> {
    const wg = await WgInterface.create({
      name: this.init.ifname, netns: null, privateKey: this.keypair!.privateKey, listenPort: this.init.port, backend: this.init.backend
    })
    try {
      await ip(['route', 'replace', this.init.prefix.vmV4, 'dev', this.init.ifname])
    } catch (err) {
      await wg.destroy()
      throw err
    }
    this.wgIf = wg
    this.applied.clear()
    this.added.clear()
    this.addressNow = null
    void wg.exited.then(() => {
      if (!this.running || this.wgIf !== wg) return
      this.c.log.error('wireguard-go exited; making the interface again', { interface: this.init.ifname, pid: wg.pid })
      this.c.schedule(0)
    })
  }

  /**
   * Puts back what the interface lost when it was set down (its routes, which setting it
   * up does not restore), and sets it up; said once per repair. Run now and then.
   */
  async checkInterface (): Promise<void> {
    const wg = this.wgIf
    if (wg == null || !wg.alive) return
    const name = this.init.ifname
    const wanted = { routes: [this.init.prefix.vmV4, ...this.addressNow != null ? [this.init.prefix.nodeV4] : []] }
    // the routes from /proc (this process's namespace): as they should be, nothing is run
    // (a set down drops them, so flags are read only then)
    const held = procRoutesOf(await readFile('/proc/net/route', 'utf8').catch(() => ''), name)
    if (interfaceRepairs({ flags: ['UP'], routes: held }, wanted).routes.length === 0) return
    let flags: string[]
    let routes: string[]
    try {
      flags = ((JSON.parse(await ip(['-j', 'link', 'show', 'dev', name])) as Array<{ flags?: string[] }>)[0]?.flags) ?? []
      routes = (JSON.parse(await ip(['-j', 'route', 'show', 'dev', name])) as Array<{ dst?: string }>).map(r => r.dst ?? '')
    } catch {
      return // gone: ensure() makes it again at the next plan
    }
    if (this.wgIf !== wg) return
    const fix = interfaceRepairs({ flags, routes }, wanted)
    if (!fix.up && fix.routes.length === 0) return
    this.c.log.warn('the WireGuard interface was set down or lost its routes (not by vgrid): set up again and its routes put back', { interface: name, wasDown: fix.up, routes: fix.routes.join(', ') })
    if (fix.up) await ip(['link', 'set', 'dev', name, 'up'])
    for (const r of fix.routes) await ip(['route', 'replace', r, 'dev', name])
  }

  /** This node's overlay address on the interface, as the plan gives it. */
  async applyAddress (addr: Addressing): Promise<void> {
    const mine = addr.nodeAddr.get(this.c.peerId) ?? null
    if (this.wgIf == null || mine === this.addressNow) return
    if (this.addressNow != null) await ip(['addr', 'del', `${this.addressNow}/32`, 'dev', this.init.ifname], { allowFail: true })
    if (mine != null) {
      await ip(['addr', 'replace', `${mine}/32`, 'dev', this.init.ifname])
      await ip(['route', 'replace', this.init.prefix.nodeV4, 'dev', this.init.ifname])
    }
    this.addressNow = mine
  }

  /** The interface's peers as the plan gives them (set and removed by difference). */
  async applyPeers (plan: PeerPlan): Promise<void> {
    const wg = this.wgIf
    if (wg == null) return
    const ops = diffPeers((await wg.show()).peers, plan.peers.values(), this.applied)
    for (const k of ops.remove) {
      await wg.removePeer(k)
      this.applied.delete(k)
      this.added.delete(k)
    }
    for (const p of ops.set) {
      await wg.setPeer(p)
      if (!this.applied.has(p.publicKey)) this.added.set(p.publicKey, Date.now())
      this.applied.set(p.publicKey, p.endpoint)
    }
    if (ops.set.length + ops.remove.length > 0) this.c.log.info('peers updated', { set: ops.set.length, removed: ops.remove.length })
  }

  /** when the peer with this key was added to the interface (ms since the epoch); null: not by this run */
  addedAt (publicKey: string): number | null { return this.added.get(publicKey) ?? null }

  private detectEndpoint (): string | null {
    const host = this.init.endpointHost ?? firstAddress(networkInterfaces(), this.init.ifname, this.init.prefix.octet)
    return host == null ? null : `${host}:${this.init.port}`
  }

  /** what this host's addresses are now, to notice a change (the interface's own left out) */
  addressKey (): string { return addressKey(networkInterfaces(), this.init.ifname) }

  /**
   * This host's addresses changed (the agent's address-change event, or the poll):
   * re-set every peer's endpoint so WireGuard sends from the new address at once
   * (wireguard-go alone stalls about 15 s), and advertise the new endpoint.
   */
  async addressChanged (): Promise<void> {
    if (this.wgIf == null || this.keypair == null) return
    const endpoint = this.detectEndpoint()
    try {
      const peers = await this.wgIf.refreshEndpoints()
      this.c.log.info('host address changed: peer endpoints re-set', { endpoint, peers: peers.length })
    } catch (err) {
      this.c.log.warn('could not re-set peer endpoints', { error: (err as Error).message })
    }
    if (endpoint !== this.endpointNow) {
      this.endpointNow = endpoint
      if (endpoint != null) this.advertise({ publicKey: this.keypair.publicKey, endpoint })
    }
  }

  /** Removes the interface (its peers with it). */
  async stop (): Promise<void> {
    this.running = false
    clearTimeout(this.ifTimer)
    await this.wgIf?.destroy()
    this.wgIf = null
  }
}
