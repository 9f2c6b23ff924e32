// One process's share of a benchmark grid: some agents, and the probes the
// membership benchmark needs (who is alive, when an advert or a message arrived, when
// a crashed member was declared dead). Times are epoch milliseconds with sub-ms
// resolution (timeOrigin + now), so arrivals in several processes of one machine
// compare directly.
import { aliveSeen, startGrid, type InProcessGrid } from './cluster.ts'

export const now = (): number => performance.timeOrigin + performance.now()

export interface ShardOptions {
  count: number
  first: number
  transport: 'memory' | 'tcp'
  run: string
  seed?: string
  keyFile?: string
}

export interface IdleStats {
  bytes: number
  /** suspicions heard, counting every agent that heard one */
  suspicions: number
  /** suspicions raised by agents here, by reason (silent heartbeats, lost connections, failed dials) */
  raised: Record<string, number>
  cpuMicros: number
  rssBytes: number
  /** connections opened and closed (as the agents here saw them) */
  opened: number
  closed: number
}

type Off = () => void

export interface ConnStats {
  /** distinct connected peers, per agent */
  peers: number[]
  /** connections beyond the first to the same peer, all agents */
  duplicates: number
  /** connection opens and closes seen by the agents here since they started */
  opened: number
  closed: number
}

export class GridShard {
  private readonly grid: InProcessGrid
  private readonly rss0: number
  private offs: Off[] = []
  private hits: number[] = []
  /** watchDead: when each agent first doubted the member (suspect or dead) */
  private doubts: number[] = []
  private readonly churn = { opened: 0, closed: 0 }
  private idle?: { cpu: NodeJS.CpuUsage, bytes: number, suspicions: number, raised: Record<string, number>, opened: number, closed: number }

  private constructor (grid: InProcessGrid, rss0: number) {
    this.grid = grid
    this.rss0 = rss0
    for (const a of grid.agents) {
      a.host.addEventListener('connection:open', () => { this.churn.opened++ })
      a.host.addEventListener('connection:close', () => { this.churn.closed++ })
    }
  }

  connStats (): ConnStats {
    let duplicates = 0
    const peers = this.grid.agents.map(a => {
      const conns = a.host.getConnections()
      const distinct = new Set(conns.map(c => c.remotePeer.toString())).size
      duplicates += conns.length - distinct
      return distinct
    })
    return { peers, duplicates, ...this.churn }
  }

  static async start (opts: ShardOptions): Promise<GridShard> {
    global.gc?.()
    const rss0 = process.memoryUsage().rss
    const grid = await startGrid(opts.count, { run: opts.run, transport: opts.transport, first: opts.first, seed: opts.seed, keyFile: opts.keyFile })
    return new GridShard(grid, rss0)
  }

  /** where other processes' agents join: this shard's first agent */
  seedAddr (): string { return this.grid.agents[0]!.addrs()[0]! }
  ids (): string[] { return this.grid.agents.map(a => a.id) }

  /** the smallest number of alive members any agent here sees */
  aliveMin (): number {
    return Math.min(...this.grid.agents.map(aliveSeen))
  }

  subscribe (topic: string): void {
    for (const a of this.grid.agents) a.host.services.pubsub.subscribe(topic)
  }

  beginIdle (): void {
    const idle = { cpu: process.cpuUsage(), bytes: 0, suspicions: 0, raised: {} as Record<string, number>, opened: this.churn.opened, closed: this.churn.closed }
    this.idle = idle
    for (const a of this.grid.agents) {
      const b = (x: number): void => { idle.bytes += x }
      const s = (_target: string, by: string, why: string): void => {
        idle.suspicions++
        if (by === a.id) idle.raised[why] = (idle.raised[why] ?? 0) + 1
      }
      a.membership.on('sent', b)
      a.membership.on('received', b)
      a.membership.on('suspected', s)
      this.offs.push(() => { a.membership.off('sent', b); a.membership.off('received', b); a.membership.off('suspected', s) })
    }
  }

  endIdle (): IdleStats {
    const idle = this.idle!
    const cpu = process.cpuUsage(idle.cpu)
    this.unwatch()
    return {
      bytes: idle.bytes,
      suspicions: idle.suspicions,
      raised: idle.raised,
      cpuMicros: cpu.user + cpu.system,
      rssBytes: process.memoryUsage().rss - this.rss0,
      opened: this.churn.opened - idle.opened,
      closed: this.churn.closed - idle.closed
    }
  }

  /** record when each agent (but the origin) accepts the origin's advert with reserved cpu = round */
  watchAdvert (originId: string, round: number): void {
    this.unwatch()
    for (const a of this.grid.agents) {
      if (a.id === originId) continue
      const h = (ad: { nodeId: string, reserved: { cpu: number } }): void => {
        if (ad.nodeId === originId && ad.reserved.cpu === round) this.hits.push(now())
      }
      a.membership.on('advert', h as never)
      this.offs.push(() => a.membership.off('advert', h as never))
    }
  }

  /** record when each agent (but the origin) receives a raw gossip message starting with `round` */
  watchRaw (originId: string, topic: string, round: number): void {
    this.unwatch()
    for (const a of this.grid.agents) {
      if (a.id === originId) continue
      const h = (evt: CustomEvent<{ topic: string, data: Uint8Array }>): void => {
        if (evt.detail.topic === topic && evt.detail.data[0] === round) this.hits.push(now())
      }
      a.host.services.pubsub.addEventListener('message', h as never)
      this.offs.push(() => a.host.services.pubsub.removeEventListener('message', h as never))
    }
  }

  /** record when each agent first marks `id` dead (hits), and first doubts it (doubts) */
  watchDead (id: string): void {
    this.unwatch()
    for (const a of this.grid.agents) {
      if (a.id === id) continue
      let seen = false
      let doubted = false
      const h = (t: { nodeId: string, to: string }): void => {
        if (t.nodeId !== id) return
        if (!doubted && (t.to === 'suspect' || t.to === 'dead')) { doubted = true; this.doubts.push(now()) }
        if (!seen && t.to === 'dead') { seen = true; this.hits.push(now()) }
      }
      a.membership.on('transition', h)
      this.offs.push(() => a.membership.off('transition', h))
    }
  }

  /** the times recorded since the last watch */
  hitTimes (): number[] { return [...this.hits] }
  doubtTimes (): number[] { return [...this.doubts] }

  /** the first agent changes its advert (reserved cpu = round); returns when */
  changeAdvert (round: number): number {
    const t = now()
    this.grid.agents[0]!.setReserved({ cpu: round, memoryBytes: 0, diskBytes: 0 })
    return t
  }

  /** the first agent publishes a raw 600-byte message; returns when */
  async publishRaw (topic: string, round: number): Promise<number> {
    const t = now()
    await this.grid.agents[0]!.host.services.pubsub.publish(topic, new Uint8Array(600).fill(round))
    return t
  }

  /** the last agent stops without a word, as a crash would; returns when */
  async crashLast (): Promise<number> {
    const victim = this.grid.agents.pop()!
    const t = now()
    await victim.stop({ graceful: false })
    return t
  }

  async stop (): Promise<void> {
    this.unwatch()
    await this.grid.stop()
  }

  private unwatch (): void {
    for (const off of this.offs) off()
    this.offs = []
    this.hits = []
    this.doubts = []
  }
}
