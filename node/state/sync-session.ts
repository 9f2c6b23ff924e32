// One state sync session: a libp2p stream to one peer carrying Automerge sync messages
// as length-prefixed frames (1 type byte + message). Apart from SyncService because a
// session's own work (framing, the read loop, and sending at most one message per
// coalesceMs so a burst travels together) is the same whichever peers are picked;
// SyncService decides which sessions exist and what a peer's bad frame costs it.
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import type { PeerSync, Replica } from '../../crdt/index.ts'
import type { Logger } from '../log.ts'

export const FRAME_SYNC = 0x01

export type SyncRejectReason = 'malformed' | 'oversized' | 'schema'

/**
 * Every message costs both ends a pass of the sync protocol over the document, and a
 * change that arrives while one is being written would otherwise go out alone (with
 * its acknowledgement coming back alone): 25 ms between messages on a session lets a
 * burst of changes (many agents placing VMs at once) travel together.
 */
export const DEFAULT_COALESCE_MS = 25

/** What a session needs from the service that holds it, and what it tells it. */
export interface SessionOwner {
  readonly replica: Replica
  readonly log: Logger
  /** the largest frame a peer may send */
  readonly maxBytes: number
  /** the least time between two messages on one session (ms) */
  readonly coalesceMs: number
  /** a frame of `bytes` went out or came in */
  traffic: (s: SyncSession, direction: 'in' | 'out', bytes: number) => void
  /** the peer's message was applied to the document */
  received: (s: SyncSession, changes: number, changed: boolean) => void
  /** the peer sent what no peer may */
  reject: (s: SyncSession, reason: SyncRejectReason, detail: string) => void
  /** the stream ended ('remote') or failed ('error') */
  ended: (s: SyncSession, why: 'remote' | 'error') => void
}

export class SyncSession {
  readonly peer: string
  /** who opened the stream: this node or the peer */
  readonly opener: string
  readonly stream: Stream
  readonly sync: PeerSync
  /** set by the owner when it closes the stream; nothing is read or sent after */
  closed = false
  lastHeard = Date.now()
  private readonly owner: SessionOwner
  private readonly lp: LengthPrefixedStream<Stream>
  private dirty = false
  private pumping = false
  /** our heads when we last generated a message, and whether the peer spoke since */
  private genHeads = ''
  private heard = true
  /** when the last message went out (performance.now()) */
  private lastSent = -Infinity

  constructor (owner: SessionOwner, stream: Stream, peer: string, opener: string) {
    this.owner = owner
    this.peer = peer
    this.opener = opener
    this.stream = stream
    this.lp = lpStream(stream, { maxDataLength: owner.maxBytes, maxBufferSize: owner.maxBytes + 16 })
    this.sync = owner.replica.newPeer()
  }

  /** Starts reading, and says what we have. */
  start (): void {
    void this.readLoop()
    this.poke()
  }

  /** Forgets what we believe the peer has and asks again (it may have missed a message). */
  restart (): void {
    this.owner.replica.resetPeer(this.sync)
    this.heard = true
    this.poke()
  }

  /** Something may be worth saying: say it once the current burst of events is handled. */
  poke (): void {
    this.dirty = true
    if (this.pumping) return
    this.pumping = true
    // after pending I/O callbacks, so a burst of writes or frames becomes one message;
    // and no sooner than coalesceMs after the previous one
    const wait = this.lastSent + this.owner.coalesceMs - performance.now()
    if (wait > 0) setTimeout(() => { void this.pump() }, wait)
    else setImmediate(() => { void this.pump() })
  }

  /** Sends at most one message; what became new meanwhile goes in the next one, coalesceMs later. */
  private async pump (): Promise<void> {
    const { replica } = this.owner
    try {
      if (!this.dirty || this.closed) return
      this.dirty = false
      // with nothing new on either side the protocol has nothing to say: skip the call
      const heads = replica.heads().join()
      if (!this.heard && heads === this.genHeads) return
      this.heard = false
      this.genHeads = heads
      const msg = replica.generate(this.sync)
      if (msg == null) return
      const frame = new Uint8Array(msg.byteLength + 1)
      frame[0] = FRAME_SYNC
      frame.set(msg, 1)
      this.lastSent = performance.now()
      await this.lp.write(frame)
      this.owner.traffic(this, 'out', frame.byteLength)
    } catch (err) {
      if (!this.closed) {
        this.owner.log.debug('state sync write failed', { peer: this.peer, error: (err as Error).message })
        this.owner.ended(this, 'error')
      }
    } finally {
      this.pumping = false
      if (this.dirty && !this.closed) this.poke()
    }
  }

  private async readLoop (): Promise<void> {
    for (;;) {
      let data: Uint8Array
      try {
        data = (await this.lp.read()).subarray()
      } catch (err) {
        if (this.closed) return
        const name = (err as Error).name
        if (name === 'InvalidDataLengthError' || name === 'StreamBufferError') this.owner.reject(this, 'oversized', (err as Error).message)
        else if (name === 'InvalidDataLengthLengthError' || name === 'InvalidMessageLengthError') this.owner.reject(this, 'malformed', (err as Error).message)
        else this.owner.ended(this, name === 'UnexpectedEOFError' ? 'remote' : 'error')
        return
      }
      if (this.closed) return
      this.owner.traffic(this, 'in', data.byteLength)
      if (data[0] !== FRAME_SYNC) {
        this.owner.reject(this, 'malformed', `unknown frame type ${data[0] ?? 'none'}`)
        return
      }
      this.heard = true
      this.lastHeard = Date.now()
      const res = this.owner.replica.receive(this.sync, data.subarray(1))
      if (!res.ok) {
        this.owner.reject(this, res.reason, res.detail)
        return
      }
      this.owner.received(this, res.changes, res.changed)
    }
  }
}
