// Heads on gossip: after a local change this agent publishes its document heads on
// the cluster's state topic, so agents that are not directly connected to it learn
// that something is new and pull it (SyncService.noteHeads). Signed by gossipsub;
// the signer is the announcing peer.
import { EventEmitter } from 'node:events'
import { TopicValidatorResult, type GossipSub, type Message } from '@libp2p/gossipsub'
import { stateTopic } from '../../protocol/topics.ts'

export const MAX_HEADS_MESSAGE_BYTES = 8 * 1024
const HEAD = /^[0-9a-f]{64}$/
/**
 * The least time between two announcements of one agent. Each is checked by every
 * member: at one a second, 50 agents placing VMs at once cost each agent 50 signature
 * checks a second for news the sync overlay had already brought.
 */
export const ANNOUNCE_EVERY_MS = 3000

export interface AnnouncerEvents {
  heads: [peer: string, heads: string[]]
  rejected: [reason: 'oversized' | 'malformed' | 'forged', detail: string]
}

/** Decodes a heads announcement; null if it is not one. */
export function decodeHeads (data: Uint8Array): string[] | null {
  if (data.byteLength > MAX_HEADS_MESSAGE_BYTES) return null
  try {
    const v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data)) as { v?: unknown, heads?: unknown }
    if (v.v !== 1 || !Array.isArray(v.heads) || v.heads.length > 64) return null
    return v.heads.every(h => typeof h === 'string' && HEAD.test(h)) ? v.heads as string[] : null
  } catch {
    return null
  }
}

export class HeadsAnnouncer extends EventEmitter<AnnouncerEvents> {
  private readonly pubsub: GossipSub
  private readonly topic: string
  private readonly heads: () => string[]
  private pending?: NodeJS.Timeout
  private lastAt = 0
  private running = false

  constructor (pubsub: GossipSub, clusterId: string, heads: () => string[]) {
    super()
    this.pubsub = pubsub
    this.topic = stateTopic(clusterId)
    this.heads = heads
  }

  start (): void {
    this.running = true
    this.pubsub.topicValidators.set(this.topic, this.validate)
    this.pubsub.addEventListener('message', this.onMessage)
    this.pubsub.subscribe(this.topic)
  }

  stop (): void {
    this.running = false
    clearTimeout(this.pending)
    this.pubsub.removeEventListener('message', this.onMessage)
    this.pubsub.topicValidators.delete(this.topic)
    try { this.pubsub.unsubscribe(this.topic) } catch {}
  }

  /**
   * Publish our heads soon: a burst of changes becomes one message, and at most one
   * per ANNOUNCE_EVERY_MS leaves (every member checks its signature; the sync sessions
   * carry the changes themselves, this only helps agents they do not reach).
   */
  announce (): void {
    if (!this.running || this.pending != null) return
    const wait = Math.max(50, this.lastAt + ANNOUNCE_EVERY_MS - Date.now())
    this.pending = setTimeout(() => {
      this.pending = undefined
      this.lastAt = Date.now()
      const body = new TextEncoder().encode(JSON.stringify({ v: 1, heads: this.heads().slice(0, 64) }))
      this.pubsub.publish(this.topic, body).catch(() => {}) // no topic peers yet: adverts carry heads too
    }, wait)
  }

  private readonly validate = (_peer: unknown, msg: Message): TopicValidatorResult => {
    if (msg.type !== 'signed') {
      this.emit('rejected', 'forged', 'unsigned heads message')
      return TopicValidatorResult.Reject
    }
    if (msg.data.byteLength > MAX_HEADS_MESSAGE_BYTES) {
      this.emit('rejected', 'oversized', `${msg.data.byteLength} bytes`)
      return TopicValidatorResult.Reject
    }
    if (decodeHeads(msg.data) == null) {
      this.emit('rejected', 'malformed', 'not a heads announcement')
      return TopicValidatorResult.Reject
    }
    return TopicValidatorResult.Accept
  }

  private readonly onMessage = (evt: CustomEvent<Message>): void => {
    const msg = evt.detail
    if (msg.topic !== this.topic || msg.type !== 'signed') return
    const heads = decodeHeads(msg.data)
    if (heads != null) this.emit('heads', msg.from.toString(), heads)
  }
}
