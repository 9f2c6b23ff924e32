// Replication between agents: every agent answers replica requests for its object
// store over a libp2p stream protocol, and calls other agents' stores the same way. A
// call to this node itself goes straight to the local store (no stream): reads from
// the local replica cost no network.
import { lpStream } from '@libp2p/utils'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p, Stream } from '@libp2p/interface'
import type { Logger } from '../log.ts'
import type { ObjectStore } from './object-store.ts'
import { GvsError } from './errors.ts'
import { Layers } from './layers.ts'
import {
  REPLICA_PROTOCOL, MAX_HEADER, decodeReply, decodeRequest, encode, errorReply, replyError,
  type ReplicaReply, type ReplicaRequest
} from './replica-protocol.ts'

export interface CallResult { reply: ReplicaReply & { ok: true }, data: Uint8Array | null }

/** what a replicated volume needs of the network: one request to one node's store */
export interface ReplicaTransport {
  readonly self: string
  call: (peer: string, req: ReplicaRequest, data?: Uint8Array) => Promise<CallResult>
}

const layersOf = new WeakMap<ObjectStore, Layers>()
/** the layer stack of a request: the volume, then what is under it */
const stack = (req: { volume: string, under?: string[] }): string[] | null => req.under != null && req.under.length > 0 ? [req.volume, ...req.under] : null

/** runs one request against a store: the handler's body and the local short cut */
export async function execute (store: ObjectStore, req: ReplicaRequest, data: Uint8Array | null): Promise<{ reply: ReplicaReply & { ok: true }, data: Uint8Array | null }> {
  let layers = layersOf.get(store)
  if (layers == null) { layers = new Layers(store); layersOf.set(store, layers) }
  switch (req.op) {
    case 'write': {
      if (data == null) throw new GvsError('invalid', 'write without data')
      const s = stack(req)
      if (s != null) await layers.write(s, req.index, req.offset, data, { epoch: req.epoch, fua: req.fua })
      else await store.write(req.volume, req.index, req.offset, data, { epoch: req.epoch, fua: req.fua })
      return { reply: { ok: true }, data: null }
    }
    case 'zero': {
      const s = stack(req)
      if (s != null) await layers.zero(s, req.index, req.offset, req.length, { epoch: req.epoch, fua: req.fua })
      else await store.zero(req.volume, req.index, req.offset, req.length, { epoch: req.epoch, fua: req.fua })
      return { reply: { ok: true }, data: null }
    }
    case 'read': {
      const s = stack(req)
      return { reply: { ok: true }, data: s != null ? await layers.read(s, req.index, req.offset, req.length) : await store.read(req.volume, req.index, req.offset, req.length) }
    }
    case 'get': {
      const obj = await store.readObject(req.volume, req.index)
      return { reply: { ok: true, present: obj != null, epoch: await store.epoch(req.volume) }, data: obj }
    }
    case 'put':
      // a whole object copied in by repair, durably, under the source's epoch (which
      // also teaches this replica the newest writer epoch)
      if (data == null || data.length !== store.objectSize) throw new GvsError('invalid', `put needs a whole object of ${store.objectSize} bytes`)
      // a copy never overwrites a copy already here (a writer may have settled it and
      // written since the copy was read); only scrub replaces a damaged one
      if (req.replace !== true && await store.has(req.volume, req.index)) return { reply: { ok: true, present: true }, data: null }
      await store.write(req.volume, req.index, 0, data, { epoch: req.epoch, fua: true })
      return { reply: { ok: true }, data: null }
    case 'verify':
      return { reply: { ok: true, bad: await store.verify(req.volume, req.index) }, data: null }
    case 'stat': {
      const s = stack(req)
      return { reply: { ok: true, present: s != null ? await layers.has(s, req.index) : await store.has(req.volume, req.index) }, data: null }
    }
    case 'remove':
      await store.remove(req.volume, req.index)
      return { reply: { ok: true }, data: null }
    case 'list':
      return { reply: { ok: true, indexes: await store.list(req.volume) }, data: null }
    case 'fence':
      await store.fence(req.volume, req.epoch)
      return { reply: { ok: true }, data: null }
    case 'flush':
      await store.flush()
      return { reply: { ok: true }, data: null }
  }
}

export interface ReplicaServiceComponents {
  host: Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol' | 'peerId'>
  store: ObjectStore
  log: Logger
}

export interface ReplicaServiceInit {
  protocol?: string
  /** per-request deadline; a replica that does not answer in time counts as failed */
  timeoutMs?: number
  maxInboundStreams?: number
}

export class ReplicaService implements ReplicaTransport {
  readonly self: string
  private readonly c: ReplicaServiceComponents
  private readonly protocol: string
  private readonly timeoutMs: number
  private readonly maxInbound: number
  private readonly maxData: number

  constructor (components: ReplicaServiceComponents, init: ReplicaServiceInit = {}) {
    this.c = components
    this.self = components.host.peerId.toString()
    this.protocol = init.protocol ?? REPLICA_PROTOCOL
    this.timeoutMs = init.timeoutMs ?? 30_000
    this.maxInbound = init.maxInboundStreams ?? 256
    this.maxData = components.store.objectSize + MAX_HEADER
  }

  async start (): Promise<void> {
    await this.c.host.handle(this.protocol, (stream, conn) => {
      void this.answer(stream, conn.remotePeer.toString())
    }, { maxInboundStreams: this.maxInbound, maxOutboundStreams: this.maxInbound })
  }

  async stop (): Promise<void> {
    await this.c.host.unhandle(this.protocol).catch(() => {})
  }

  async call (peer: string, req: ReplicaRequest, data?: Uint8Array): Promise<CallResult> {
    if (peer === this.self) return await execute(this.c.store, req, data ?? null)
    try {
      return await this.callOnce(peer, req, data)
    } catch (err) {
      // a stream reset (a duplicate connection closed under it, a connection replaced)
      // is worth one more try: every request is idempotent (writes carry their data
      // and offset; a put never replaces; a flush covers what was written)
      if (!(err instanceof GvsError) || err.code !== 'unavailable' || !/reset|closed/i.test(err.message)) throw err
      return await this.callOnce(peer, req, data)
    }
  }

  private async callOnce (peer: string, req: ReplicaRequest, data?: Uint8Array): Promise<CallResult> {
    let stream: Stream | undefined
    try {
      const signal = AbortSignal.timeout(this.timeoutMs)
      stream = await this.c.host.dialProtocol(peerIdFromString(peer), this.protocol, { signal })
      const lp = lpStream(stream, { maxDataLength: this.maxData })
      await lp.write(encode(req), { signal })
      if (req.op === 'write' || req.op === 'put') await lp.write(data ?? new Uint8Array(0), { signal })
      const reply = decodeReply((await lp.read({ signal })).subarray())
      if (!reply.ok) throw replyError(reply, peer)
      let out: Uint8Array | null = null
      if (req.op === 'read' || (req.op === 'get' && reply.present === true)) out = (await lp.read({ signal })).subarray()
      await stream.close({ signal }).catch(() => {})
      return { reply, data: out }
    } catch (err) {
      stream?.abort(err as Error)
      if (err instanceof GvsError) throw err
      throw new GvsError('unavailable', `replica ${peer} unreachable for ${req.op}: ${(err as Error).message}`, { cause: err })
    }
  }

  private async answer (stream: Stream, from: string): Promise<void> {
    const signal = AbortSignal.timeout(this.timeoutMs)
    const lp = lpStream(stream, { maxDataLength: this.maxData })
    try {
      let reply: ReplicaReply
      let data: Uint8Array | null = null
      try {
        const req = decodeRequest((await lp.read({ signal })).subarray())
        const payload = req.op === 'write' || req.op === 'put' ? (await lp.read({ signal })).subarray() : null
        const r = await execute(this.c.store, req, payload)
        reply = r.reply
        data = r.data
      } catch (err) {
        if (!(err instanceof GvsError)) throw err
        reply = errorReply(err)
        if (err.code !== 'stale-epoch') this.c.log.warn('replica request failed', { from, error: err.message })
      }
      await lp.write(encode(reply), { signal })
      if (data != null) await lp.write(data, { signal })
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
    }
  }
}
