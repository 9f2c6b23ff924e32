// This node's own advert: its version (incarnation, seq), publishing it at once when
// something changed or a suspicion must be refuted, and refreshing it every so often.
import type { GossipSub } from '@libp2p/gossipsub'
import type { PrivateKey } from '@libp2p/interface'
import { monoNow } from './mono-clock.ts'
import { ADVERT_VERSION, encodeAdvert, signAdvert, type Advert, type UnsignedAdvert } from './advert.ts'
import { compareVersions, type Version } from './membership.ts'
import { PROTOCOL } from './compat.ts'

/** The parts of an advert the agent supplies; OwnAdvert adds identity, protocol, sequencing and the signature. */
export type AdvertBody = Omit<Advert, 'v' | 'proto' | 'protoMin' | 'cluster' | 'nodeId' | 'incarnation' | 'seq' | 'status' | 'sig'>

/**
 * Test hook: with VGRID_TEST_HOOKS=1, the JSON object in VGRID_TEST_ADVERT_EXTRA is
 * added to every advert this node signs, as fields a newer release would add. Fields
 * the advert already has are left alone, except `proto` and `protoMin`, so that a
 * test can also play a release of another protocol version. Without both variables:
 * nothing. Pure over `env`; a value that is not a JSON object is an error naming the
 * variable.
 */
export function testAdvertExtra (env: Record<string, string | undefined>): Record<string, unknown> {
  const raw = env.VGRID_TEST_ADVERT_EXTRA
  if (env.VGRID_TEST_HOOKS !== '1' || raw == null || raw === '') return {}
  let v: unknown
  try {
    v = JSON.parse(raw)
  } catch (err) {
    throw new Error(`VGRID_TEST_ADVERT_EXTRA is not JSON: ${(err as Error).message}`)
  }
  if (typeof v !== 'object' || v == null || Array.isArray(v)) throw new Error('VGRID_TEST_ADVERT_EXTRA must be a JSON object')
  return v as Record<string, unknown>
}

/**
 * A node re-publishes on new topic peers until one advert reached a peer directly:
 * that peer forwards it over its mesh to the whole grid, and every later neighbour
 * gets it by member sync when it connects. (Waiting for a mesh's worth of direct
 * peers cost each newcomer 4-5 adverts while its connections came up, each checked by
 * every member: most of a 200-agent grid's work when its last agents joined.)
 */
const ANNOUNCE_REACH = 1

/**
 * Refreshes are the only per-member cost every node pays (it receives N adverts per
 * refresh period, each about 4 times over the mesh), and were most of an idle grid's
 * CPU. Changes go out at once and the periodic member sync repairs lost ones, so a
 * refresh only keeps load figures fresh: the period grows with the grid, at least
 * `base` and 1 s per member, at most 5 minutes, so every node receives about one
 * refresh a second whatever the size.
 */
export function refreshFor (members: number, base: number): number {
  return Math.max(base, Math.min(300_000, members * 1000))
}

export interface OwnAdvertInit {
  pubsub: GossipSub
  topic: string
  /** the node's identity key, which signs its adverts */
  privateKey: PrivateKey
  clusterId: string
  nodeId: string
  body: () => AdvertBody
  refreshMs: number
  /** how many members the grid has (the refresh period grows with it) */
  members: () => number
  /** every advert this node signs, before it goes out */
  onSigned: (advert: Advert) => void
  onSent: (bytes: number) => void
  /**
   * this run's incarnation, greater than any earlier run's (node/incarnation.ts keeps
   * the last one in the data dir, so a clock behind the previous run's does not make
   * this run's adverts older than its); default: the wall clock now
   */
  incarnation?: number
}

export class OwnAdvert {
  private readonly init: OwnAdvertInit
  private readonly incarnation: number
  private seq = 0
  private pending?: NodeJS.Immediate
  private refresh?: NodeJS.Timeout
  private refuting?: Promise<void>
  /** topic peers our last advert went to straight from us (see onNewTopicPeer) */
  private reached = 0
  /** when the last advert was signed (monoNow(): a wall clock step neither holds refreshes back nor rushes them); any advert counts as a refresh */
  private publishedAt = 0
  private running = false
  /** fields added by the test hook (testAdvertExtra); empty in production */
  private readonly extra = testAdvertExtra(process.env)

  constructor (init: OwnAdvertInit) {
    this.init = init
    this.incarnation = init.incarnation ?? Date.now()
  }

  get version (): Version { return { incarnation: this.incarnation, seq: this.seq } }

  start (): void {
    this.running = true
    void this.publish('alive')
    this.scheduleRefresh()
  }

  /** Graceful stop announces "leaving", so peers mark this node left, not dead. */
  async stop (opts: { graceful?: boolean } = {}): Promise<void> {
    if (!this.running) return
    this.running = false
    clearTimeout(this.refresh)
    clearImmediate(this.pending)
    if (opts.graceful !== false) await this.publish('leaving')
  }

  /**
   * Something in our advert changed: publish once the current burst of work is done
   * (changes made together go out as one advert), not at the next refresh. An
   * immediate, not a timer: on a busy node a timer waits for the next timers phase,
   * which cost a change about 0.4 s with 200 agents in one process.
   */
  advertiseNow (): void {
    if (!this.running || this.pending != null) return
    this.pending = setImmediate(() => {
      this.pending = undefined
      void this.publish('alive')
    })
  }

  /** We are suspected (or held dead) at version `v` but alive: refute with a newer version, right away. */
  refute (v: Version): void {
    this.catchUp(v)
    this.advertiseNow()
  }

  /**
   * A neighbour holds us as suspect or dead at `v` (seen in its member-sync digest):
   * make sure the advert we hold is newer, publishing one now if need be, so that the
   * same exchange carries the refutation back. Concurrent doubts share one publish.
   */
  async refuteNow (v: Version): Promise<void> {
    if (compareVersions(this.version, v) > 0) return
    this.catchUp(v)
    this.refuting ??= this.publish('alive').finally(() => { this.refuting = undefined })
    await this.refuting
  }

  /**
   * A peer (re)joined the topics. While our adverts reach fewer than a mesh's worth of
   * peers directly (we are new, or were cut off) we publish again, so the grid learns
   * of us now rather than at the next refresh. Established members do not: the new
   * peer pulls their adverts by member sync when it connects, and an advert from each
   * of them for every newcomer made a grid starting at once cost O(N^2) messages.
   */
  onNewTopicPeer (): void {
    if (this.reached < ANNOUNCE_REACH) this.advertiseNow()
  }

  /** A doubt names a seq of ours beyond the current one (we restarted our count): continue from it. */
  private catchUp (v: Version): void {
    if (v.incarnation === this.incarnation && v.seq > this.seq && v.seq < this.seq + 1_000_000) this.seq = v.seq
  }

  /**
   * The next refresh, with ±10 % jitter so that a grid started together does not
   * refresh in bursts. The period is checked again when the timer fires: a newcomer
   * learns the grid's size only after its first advert, and any advert sent meanwhile
   * (a change, a refutation) already was a refresh.
   */
  private scheduleRefresh (delayMs = this.refreshPeriod()): void {
    this.refresh = setTimeout(() => {
      if (!this.running) return
      const left = this.publishedAt + this.refreshPeriod() - monoNow()
      if (left > 0) { this.scheduleRefresh(left); return }
      void this.publish('alive')
      this.scheduleRefresh()
    }, delayMs)
  }

  private refreshPeriod (): number {
    return refreshFor(this.init.members(), this.init.refreshMs) * (0.9 + Math.random() * 0.2)
  }

  private async publish (status: Advert['status']): Promise<void> {
    const known: UnsignedAdvert = {
      v: ADVERT_VERSION,
      proto: PROTOCOL.max,
      protoMin: PROTOCOL.min,
      cluster: this.init.clusterId,
      nodeId: this.init.nodeId,
      incarnation: this.incarnation,
      seq: ++this.seq,
      status,
      ...this.init.body()
    }
    // test-hook fields go after the known ones and replace none but the protocol range
    const { proto, protoMin } = this.extra
    const advert = await signAdvert(this.init.privateKey, { ...known, ...this.extra, ...known, ...(proto == null ? {} : { proto, protoMin }) } as UnsignedAdvert)
    this.publishedAt = monoNow()
    this.init.onSigned(advert)
    const data = encodeAdvert(advert)
    try {
      const { recipients } = await this.init.pubsub.publish(this.init.topic, data)
      this.reached = recipients.length
      this.init.onSent(data.byteLength)
    } catch {
      // no peers yet, or stopping: the next refresh tries again
    }
  }
}
