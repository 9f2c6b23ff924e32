// Member sync: when two members connect, the dialling side sends a digest of the
// adverts it holds (node id -> version), the other answers with every advert that is
// newer than the digest plus its own digest, and the dialler sends back what the
// other lacks (push-pull, as Serf does on join). A new server so learns the whole
// grid from its first connection instead of waiting for every advert refresh.
// Adverts are self-signed, so relayed ones are checked like gossiped ones.
// The digest also lists the members its sender holds as suspect or dead (a third
// element, "doubted"), so that a member doubted by mistake, whose refutation on gossip
// was lost (a grid starting at once), learns it at the next exchange and refutes.
// Forward compatible: a message's fields this agent does not know are ignored, and so
// are digest entries of a shape it does not know (the advert is then sent, as to a
// peer that lacks it); relayed adverts keep their unknown fields (see advert.ts).
// Only a known field that is missing or of the wrong type fails the exchange.
// Only such bad input reaches `onError` (counted as a rejected message): an exchange
// cut short by the network (a timeout, a peer restarting or going away) is no
// rejection, and a grid whose members were only restarted counted dozens of them.
import { lpStream } from '@libp2p/utils'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import type { Advert } from './advert.ts'
import { compareVersions, type MemberTable, type Version } from './membership.ts'

const MAX_MESSAGE = 8 * 1024 * 1024
const TIMEOUT_MS = 10_000

/** node id -> [incarnation, seq], or [incarnation, seq, "doubted"] for a suspect or dead member */
export type Digest = Record<string, [number, number] | [number, number, 'doubted']>

export interface MemberSyncInit {
  host: Libp2p
  protocol: string
  /** adverts of the members worth passing on (alive ones), self included */
  adverts: () => Advert[]
  /** members held as suspect or dead, with the version they were doubted at */
  doubted?: () => Array<{ nodeId: string } & Version>
  /** relayed adverts, still to be verified by the receiver */
  onAdverts: (raw: Uint8Array[], from: string) => void
  /** the peer holds this node as suspect or dead at `version`: refute (the reply then carries the newer advert) */
  onDoubted?: (version: Version, from: string) => Promise<void>
  /** the peer sent bad input (not JSON, a broken known field, a frame over the limit): a rejected message */
  onError?: (peer: string, err: Error) => void
  /** the exchange was cut short by the stream or the network (timeout, reset, the peer went away): not a rejection */
  onStreamError?: (peer: string, err: Error) => void
}

/** A member-sync message that breaks the format: the peer's fault, unlike a stream that fails. */
export class MalformedSyncMessage extends Error {
  override name = 'MalformedSyncMessage'
}

/** the length-prefix reader's errors for a frame that breaks the protocol (@libp2p/utils stream-utils.js) */
const BAD_FRAME = new Set(['InvalidMessageLengthError', 'InvalidDataLengthError', 'InvalidDataLengthLengthError'])

/**
 * Whether an exchange failed on the peer's bad input (a malformed message, a frame
 * over the limit), as opposed to the stream or network failing. Pure.
 */
export function isBadInput (err: unknown): boolean {
  return err instanceof MalformedSyncMessage || BAD_FRAME.has((err as Error | null)?.name ?? '')
}

export function digestOf (adverts: Advert[], doubted: Array<{ nodeId: string } & Version> = []): Digest {
  const d: Digest = {}
  for (const m of doubted) d[m.nodeId] = [m.incarnation, m.seq, 'doubted']
  for (const a of adverts) d[a.nodeId] = [a.incarnation, a.seq]
  return d
}

/** The version at which the digest's sender doubts `nodeId`, if it does. Pure. */
export function doubtedIn (digest: Digest, nodeId: string): Version | undefined {
  const d = digest[nodeId]
  if (!Array.isArray(d) || d[2] !== 'doubted') return undefined
  return { incarnation: Number(d[0]), seq: Number(d[1]) }
}

/** The adverts the holder of `digest` lacks or has older versions of. Pure. */
export function newerThan (adverts: Advert[], digest: Digest): Advert[] {
  return adverts.filter(a => {
    const d = digest[a.nodeId]
    if (!Array.isArray(d) || d.length < 2 || d[2] === 'doubted') return true
    const theirs: Version = { incarnation: Number(d[0]), seq: Number(d[1]) }
    return compareVersions(a, theirs) > 0
  })
}

/**
 * Whom the next anti-entropy exchange goes to: a connected peer that is alive or not
 * known at all, picked with `random` in [0, 1). A connected peer we hold no advert of
 * is a member all the same (only key holders connect): a newcomer whose first
 * exchange failed (its join address was too busy to answer in time) knows nobody
 * else, and picking among alive members only, it never asked again and saw only
 * itself. Pure.
 */
export function syncPartner (table: MemberTable, connected: readonly string[], random: number): string | undefined {
  const candidates = connected.filter(id => {
    const state = table.get(id)?.state
    return state == null || state === 'alive'
  })
  return candidates[Math.floor(random * candidates.length)]
}

const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v))

function parseDigest (v: unknown): Digest {
  if (typeof v !== 'object' || v == null || Array.isArray(v)) throw new Error('digest is not an object')
  return v as Digest
}

export interface SyncMessage { digest: Digest, adverts: Uint8Array[] }

/**
 * One member-sync message, with the fields `want` names checked (an error names the
 * broken one) and any other field ignored. Pure.
 */
export function parseSyncMessage<K extends keyof SyncMessage> (data: Uint8Array, want: readonly K[]): Pick<SyncMessage, K> {
  try {
    return parseFields(data, want)
  } catch (err) {
    // JSON.parse's SyntaxError, the decoder's TypeError and the checks' own: all bad input
    throw new MalformedSyncMessage((err as Error).message)
  }
}

function parseFields<K extends keyof SyncMessage> (data: Uint8Array, want: readonly K[]): Pick<SyncMessage, K> {
  const v: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data))
  if (typeof v !== 'object' || v == null || Array.isArray(v)) throw new Error('member sync message is not an object')
  const msg = v as Record<string, unknown>
  const out: Partial<SyncMessage> = {}
  for (const k of want) {
    if (k === 'digest') out.digest = parseDigest(msg.digest)
    else out.adverts = parseAdvertList(msg.adverts)
  }
  return out as Pick<SyncMessage, K>
}

/** a grid of this many servers is far beyond any rack; more is a hostile peer */
const MAX_ADVERTS = 10_000

function parseAdvertList (v: unknown): Uint8Array[] {
  if (!Array.isArray(v)) throw new Error('adverts is not a list')
  if (v.length > MAX_ADVERTS) throw new Error(`${v.length} adverts in one exchange`)
  // re-encode one by one: each is verified on its own by the receiver
  return v.map(a => enc(a))
}

export class MemberSync {
  private readonly init: MemberSyncInit
  private readonly inFlight = new Set<string>()

  constructor (init: MemberSyncInit) {
    this.init = init
  }

  async start (): Promise<void> {
    await this.init.host.handle(this.init.protocol, (stream, conn) => {
      void this.answer(stream, conn.remotePeer.toString())
    }, { maxInboundStreams: 2 })
    this.init.host.addEventListener('peer:connect', this.onConnect)
    // peers that connected while the agent was still starting
    for (const c of this.init.host.getConnections()) void this.exchange(c.remotePeer)
  }

  async stop (): Promise<void> {
    this.init.host.removeEventListener('peer:connect', this.onConnect)
    await this.init.host.unhandle(this.init.protocol).catch(() => {})
  }

  // one exchange per pair is enough: the side with the smaller peer id starts it
  private readonly onConnect = (evt: CustomEvent<PeerId>): void => {
    if (this.init.host.peerId.toString() < evt.detail.toString()) void this.exchange(evt.detail)
  }

  /** Dialling side: digest out, adverts + digest in, adverts out. */
  async exchange (peer: PeerId): Promise<void> {
    const id = peer.toString()
    if (this.inFlight.has(id)) return
    this.inFlight.add(id)
    let stream: Stream | undefined
    try {
      const signal = AbortSignal.timeout(TIMEOUT_MS)
      stream = await this.init.host.dialProtocol(peer, this.init.protocol, { signal })
      const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE })
      const mine = this.init.adverts()
      await lp.write(enc({ digest: digestOf(mine, this.init.doubted?.()) }), { signal })
      const reply = parseSyncMessage((await lp.read({ signal })).subarray(), ['adverts', 'digest'])
      this.init.onAdverts(reply.adverts, id)
      const digest = reply.digest
      const now = await this.checkDoubt(digest, id) ? this.init.adverts() : mine
      await lp.write(enc({ adverts: newerThan(now, digest) }), { signal })
      await stream.close({ signal })
    } catch (err) {
      stream?.abort(err as Error)
      // a peer that is not a vgrid agent (or went away) simply has nothing for us
      if ((err as Error).name !== 'UnsupportedProtocolError') this.failed(id, err as Error)
    } finally {
      this.inFlight.delete(id)
    }
  }

  /** True if the peer doubted this node (and the refutation is done). */
  private async checkDoubt (digest: Digest, from: string): Promise<boolean> {
    const v = doubtedIn(digest, this.init.host.peerId.toString())
    if (v == null || this.init.onDoubted == null) return false
    await this.init.onDoubted(v, from)
    return true
  }

  private async answer (stream: Stream, id: string): Promise<void> {
    try {
      const signal = AbortSignal.timeout(TIMEOUT_MS)
      const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE })
      const { digest } = parseSyncMessage((await lp.read({ signal })).subarray(), ['digest'])
      await this.checkDoubt(digest, id)
      const mine = this.init.adverts()
      await lp.write(enc({ adverts: newerThan(mine, digest), digest: digestOf(mine, this.init.doubted?.()) }), { signal })
      const last = parseSyncMessage((await lp.read({ signal })).subarray(), ['adverts'])
      this.init.onAdverts(last.adverts, id)
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
      this.failed(id, err as Error)
    }
  }

  /** bad input is a rejection (onError); a stream that failed is not (onStreamError) */
  private failed (id: string, err: Error): void {
    if (isBadInput(err)) this.init.onError?.(id, err)
    else this.init.onStreamError?.(id, err)
  }
}
