// The membership component: publishes this node's advert on the cluster topic (at
// once on change, otherwise every interval), validates and applies the adverts of
// others, and drives the pure state machine in membership.ts with the real clock.
import { EventEmitter } from 'node:events'
import { TopicValidatorResult, type GossipSub } from '@libp2p/gossipsub'
import type { Message } from '@libp2p/gossipsub'
import { decodeAdvert, encodeAdvert, type Advert, type AdvertRejection } from './advert.ts'
import { onAdvert, onTick, type MemberTable, type MembershipConfig, type Transition, DEFAULT_MEMBERSHIP } from './membership.ts'
import { advertTopic } from './topics.ts'

/** The parts of an advert the agent supplies; the service adds identity and sequencing. */
export type AdvertBody = Omit<Advert, 'v' | 'cluster' | 'nodeId' | 'incarnation' | 'seq' | 'status'>

export interface MembershipServiceInit {
  pubsub: GossipSub
  nodeId: string
  clusterId: string
  body: () => AdvertBody
  config?: Partial<MembershipConfig>
  advertIntervalMs?: number
  tickMs?: number
  now?: () => number
}

export interface MembershipEvents {
  transition: [Transition & { member?: Advert }]
  advert: [Advert]
  rejected: [AdvertRejection, string]
  sent: [Advert]
}

export class MembershipService extends EventEmitter<MembershipEvents> {
  readonly config: MembershipConfig
  private readonly init: MembershipServiceInit
  private readonly topic: string
  private readonly now: () => number
  private readonly incarnation: number
  private seq = 0
  private table: MemberTable = new Map()
  private interval?: NodeJS.Timeout
  private ticker?: NodeJS.Timeout
  private pending?: NodeJS.Timeout
  private running = false

  constructor (init: MembershipServiceInit) {
    super()
    this.init = init
    this.config = { ...DEFAULT_MEMBERSHIP, ...init.config }
    this.topic = advertTopic(init.clusterId)
    this.now = init.now ?? Date.now
    this.incarnation = Date.now()
  }

  get members (): MemberTable { return this.table }

  start (): void {
    if (this.running) return
    this.running = true
    const { pubsub } = this.init
    pubsub.topicValidators.set(this.topic, this.validate)
    pubsub.addEventListener('message', this.onMessage)
    pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    pubsub.subscribe(this.topic)
    this.advertiseNow()
    this.interval = setInterval(() => this.publish('alive'), this.init.advertIntervalMs ?? 1000)
    this.ticker = setInterval(() => this.tick(), this.init.tickMs ?? 250)
  }

  /** Graceful stop: one last advert tells the others we left, rather than died. */
  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    clearInterval(this.interval)
    clearInterval(this.ticker)
    clearTimeout(this.pending)
    await this.publish('leaving')
    const { pubsub } = this.init
    pubsub.removeEventListener('message', this.onMessage)
    pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
    pubsub.topicValidators.delete(this.topic)
  }

  /** Something in our advert changed: publish soon (coalescing bursts), not at the next interval. */
  advertiseNow (): void {
    if (!this.running || this.pending != null) return
    this.pending = setTimeout(() => {
      this.pending = undefined
      void this.publish('alive')
    }, 20)
  }

  private async publish (status: Advert['status']): Promise<void> {
    const advert: Advert = {
      v: 1,
      cluster: this.init.clusterId,
      nodeId: this.init.nodeId,
      incarnation: this.incarnation,
      seq: ++this.seq,
      status,
      ...this.init.body()
    }
    this.apply(advert)
    try {
      await this.init.pubsub.publish(this.topic, encodeAdvert(advert))
      this.emit('sent', advert)
    } catch {
      // no peers yet, or stopping: the next interval tries again
    }
  }

  private readonly validate = (_peer: unknown, msg: Message): TopicValidatorResult => {
    if (msg.type !== 'signed') {
      this.emit('rejected', 'forged', 'unsigned message')
      return TopicValidatorResult.Reject
    }
    const res = decodeAdvert(msg.data, msg.from.toString(), this.init.clusterId)
    if (!res.ok) {
      this.emit('rejected', res.reason, res.detail)
      return TopicValidatorResult.Reject
    }
    return TopicValidatorResult.Accept
  }

  private readonly onMessage = (evt: CustomEvent<Message>): void => {
    const msg = evt.detail
    if (msg.topic !== this.topic || msg.type !== 'signed') return
    // already validated; decoding again is cheap and keeps the two paths independent
    const res = decodeAdvert(msg.data, msg.from.toString(), this.init.clusterId)
    if (res.ok) {
      this.emit('advert', res.advert)
      this.apply(res.advert)
    }
  }

  private readonly onSubscriptionChange = (): void => {
    // a peer (re)joined the topic: let it learn about us now rather than in a second
    this.advertiseNow()
  }

  private apply (advert: Advert): void {
    const step = onAdvert(this.table, advert, this.now())
    this.table = step.table
    for (const t of step.transitions) this.emit('transition', { ...t, member: advert })
  }

  private tick (): void {
    const step = onTick(this.table, this.now(), this.config, this.init.nodeId)
    this.table = step.table
    for (const t of step.transitions) this.emit('transition', t)
  }
}
