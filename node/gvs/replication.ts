// Replication between agents: every agent answers replica requests for its object
// store over a libp2p stream protocol, and calls other agents' stores the same way. A
// call to this node itself goes straight to the local store (no stream): reads from
// the local replica cost no network. Calls to another node share long-lived pipelined
// streams (replica-channel.ts), in lanes:
// - small requests (up to 64 KiB of data either way) on one stream, where those issued
//   together go out as one frame (per-frame costs dominate a 4 KiB request);
// - large reads and writes spread over a few more streams: yamux lets each stream have
//   only 256 KiB unacknowledged (its window never grows here: that needs the round-trip
//   time, which only its keep-alive pings measure, and those are off), so one stream
//   carries at most 256 KiB per round trip;
// - whole-object copies (repair, moves) on two streams of their own, so a 4 MiB copy
//   never queues a VM's 4 KiB request behind it.
// Requests on different streams may be run by a replica in another order than sent;
// the writer never has two overlapping writes in flight (replicated-volume.ts), so
// replicas still agree.
import { setTimeout as sleep } from 'node:timers/promises'
import { lpStream } from '@libp2p/utils'
import type { Libp2p, Stream } from '@libp2p/interface'
import type { Logger } from '../log.ts'
import { STORE_NAME, type ObjectStore } from './object-store.ts'
import { DiskFull } from './disk-full.ts'
import { StoreRefusals } from './store-refusals.ts'
import { GvsError, isGvsError } from './errors.ts'
import { Layers } from './layers.ts'
import { NO_VERSION, type Version } from './versions.ts'
import { layerNumber } from './volumes.ts'
import {
  REPLICA_PROTOCOL, REPLICA_PROTOCOL_V1, MAX_HEADER, decodeRequest, encode, errorReply, answerList, listPage, decodeList, listedOf,
  type Listed, type ReplicaReply, type ReplicaRequest
} from './replica-protocol.ts'
import { PeerReach } from './peer-reach.ts'
import { PeerChannel, serveChannel, type CallResult, type ChannelLimits } from './replica-channel.ts'
import { ObjectUses } from './object-uses.ts'
import { RepeatedLines } from '../log-repeats.ts'

export type { CallResult } from './replica-channel.ts'

/** what a replicated volume needs of the network: one request to one node's store */
export interface ReplicaTransport {
  readonly self: string
  call: (peer: string, req: ReplicaRequest, data?: Uint8Array) => Promise<CallResult>
}

const layersOf = new WeakMap<ObjectStore, Layers>()
/** the layer stack of a request: the volume, then what is under it */
const stack = (req: { volume: string, under?: string[] }): string[] | null => req.under != null && req.under.length > 0 ? [req.volume, ...req.under] : null

/** a write's version: its writer's epoch and the writer's sequence number for the object */
const versionOf = (req: { epoch: number, seq?: number }): Version | undefined => req.seq == null ? undefined : { epoch: req.epoch, seq: req.seq }

const usesOf = new WeakMap<ObjectStore, ObjectUses>()

/** the uses of a store's copies (object-uses.ts), one record per store */
export function objectUses (store: ObjectStore): ObjectUses {
  let u = usesOf.get(store)
  if (u == null) { u = new ObjectUses(); usesOf.set(store, u) }
  return u
}

/** runs one request against a store: the handler's body and the local short cut */
export async function execute (store: ObjectStore, req: ReplicaRequest, data: Uint8Array | null): Promise<{ reply: ReplicaReply & { ok: true }, data: Uint8Array | null }> {
  let layers = layersOf.get(store)
  if (layers == null) { layers = new Layers(store); layersOf.set(store, layers) }
  // a client's use of the copy (and of those under it), at its arrival: a retire queued
  // behind it sees it (object-uses.ts); a repair's probe and the list are not uses
  const uses = objectUses(store)
  if ('index' in req && req.op !== 'retire' && req.op !== 'remove' && req.op !== 'merge' && !(req.op === 'stat' && req.probe === true)) {
    uses.used(req.volume, req.index)
    if ('under' in req) for (const l of req.under ?? []) uses.used(l, req.index)
  }
  // a copy a retire removed lately, still absent, and a client that takes this node for
  // its holder (its placement lagged the agreement): a write would land on zeros, a
  // read answer them. It is told to settle again, which brings the newest copy here
  if ((req.op === 'write' || req.op === 'zero' || req.op === 'read') && uses.wasRetired(req.volume, req.index) && !(await store.stat(req.volume, req.index)).present) {
    throw new GvsError('unavailable', `object ${req.index} of "${req.volume}" was freed here as a surplus copy: settle it again`, { transient: true })
  }
  // a snapshot froze the layer: its writer follows the snapshot to the new top
  // (live-volume.ts). Not a zero of no bytes: a settle's version step, which changes no
  // byte of the snapshot (settler.ts outdate)
  if ((req.op === 'write' || (req.op === 'zero' && req.length > 0)) && req.followsFreeze === true && store.frozen.has(req.volume)) {
    // a fenced writer is told so, not sent to wait for a new top
    const floor = await store.writerFloor(req.volume)
    if (req.epoch < floor) throw new GvsError('stale-epoch', `volume "${req.volume}": writer epoch ${req.epoch} is older than ${floor}, the newest this replica has seen`)
    throw new GvsError('frozen', `layer "${req.volume}" was frozen by a snapshot: its writer must go on in the volume's new top layer`)
  }
  switch (req.op) {
    case 'write': {
      if (data == null) throw new GvsError('invalid', 'write without data')
      const s = stack(req)
      const opts = { epoch: req.epoch, fua: req.fua, version: versionOf(req) }
      if (s != null) await layers.write(s, req.index, req.offset, data, opts)
      else await store.write(req.volume, req.index, req.offset, data, opts)
      return { reply: { ok: true }, data: null }
    }
    case 'zero': {
      const s = stack(req)
      const opts = { epoch: req.epoch, fua: req.fua, version: versionOf(req) }
      if (s != null) await layers.zero(s, req.index, req.offset, req.length, opts)
      else await store.zero(req.volume, req.index, req.offset, req.length, opts)
      return { reply: { ok: true }, data: null }
    }
    case 'read': {
      const s = stack(req)
      return { reply: { ok: true }, data: s != null ? await layers.read(s, req.index, req.offset, req.length) : await store.read(req.volume, req.index, req.offset, req.length) }
    }
    case 'get': {
      const obj = await store.readObject(req.volume, req.index, { digest: req.digest })
      // the epoch its writers must reach here (the layers under it count): a copy teaches it to its new holder
      return { reply: { ok: true, present: obj != null, epoch: await store.writerFloor(req.volume), ...(obj != null ? { version: obj.version } : {}), ...(obj?.digest != null ? { digest: obj.digest } : {}) }, data: obj?.data ?? null }
    }
    case 'put':
      // a whole object copied in by repair or a move, carrying its version and the
      // source's epoch (which teaches this replica the newest writer epoch)
      if (data == null || data.length !== store.objectSize) throw new GvsError('invalid', `put needs a whole object of ${store.objectSize} bytes`)
      // it replaces only an older copy (a writer may have settled the object and
      // written since the copy was read); scrub's `replace` rewrites a damaged one.
      // Durable before the answer, but synced outside the object's hold (readers of it
      // wait for the write, not the disk)
      // a copy back where a retire removed one: writes and reads are welcome again
      uses.wasRetired(req.volume, req.index, true)
      if (await store.put(req.volume, req.index, { data, version: req.version ?? NO_VERSION }, { epoch: req.epoch, replace: req.replace, ifDigest: req.ifDigest })) return { reply: { ok: true, present: true }, data: null }
      await store.syncObject(req.volume, req.index)
      return { reply: { ok: true }, data: null }
    case 'verify':
      return { reply: { ok: true, bad: await store.verify(req.volume, req.index) }, data: null }
    case 'stat': {
      const s = stack(req)
      if (s != null) return { reply: { ok: true, present: await layers.has(s, req.index) }, data: null }
      const st = await store.stat(req.volume, req.index, { digest: req.digest })
      // the writer epoch this node refuses writers below: a writer that sees a newer one was
      // deposed (settler.ts); not said when its epoch file is damaged (its writes are
      // refused; a stat, which reads, still answers, as an older agent's does: rv35)
      const floor = await store.writerFloor(req.volume).catch((err: unknown) => { if (isGvsError(err, 'damaged')) return undefined; throw err })
      return { reply: { ok: true, present: st.present, version: st.version, ...(floor != null ? { epoch: floor } : {}), ...(st.digest != null ? { digest: st.digest } : {}) }, data: null }
    }
    case 'remove':
      await store.remove(req.volume, req.index)
      return { reply: { ok: true }, data: null }
    case 'mark':
      return { reply: { ok: true, mark: uses.mark() }, data: null }
    case 'retire': {
      const r = await store.retire(req.volume, req.index, req.version, () => uses.unusedSince(req.volume, req.index, req.since, req.quietMs))
      if (r === 'removed') uses.retired(req.volume, req.index)
      // count: 1 when this retire removed it (a copy already gone is not freed twice)
      return { reply: { ok: true, present: r === 'kept', count: r === 'removed' ? 1 : 0 }, data: null }
    }
    case 'list':
      // a page reads one more than it answers: whether there are more
      return answerList(await store.inventory(req.volume, req.from == null && req.limit == null ? undefined : { from: req.from ?? 0, limit: Math.min(req.limit ?? Infinity, listPage(store.objectSize)) + 1 }), req, store.objectSize)
    case 'merge': {
      // both are the store's names (its checks cover `volume` wherever it is used; `from` is only read where the lines match)
      if (!STORE_NAME.test(req.from)) throw new GvsError('invalid', `merge from "${req.from}": not a layer name`)
      // the epoch taught, within a line only: a source volume's layer folded into a
      // clone's base is another volume's, whose writers' epochs are no measure of the clone's
      const epoch = layerNumber(req.from).base === layerNumber(req.volume).base ? await store.writerFloor(req.from) : 0
      // the fold's last step: the copies below on stable storage, and the epoch taught
      if (req.index == null) {
        await store.fence(req.volume, epoch, { learnOnly: true })
        await store.flush(req.volume)
        return { reply: { ok: true }, data: null }
      }
      // a copy the layer above has is its own, newer than the one below: the put lands
      // only where there is none, checked inside the object's hold (a writer whose
      // document lags may still copy up into it)
      if ((await store.stat(req.volume, req.index)).present) return { reply: { ok: true, present: true }, data: null }
      const obj = await store.readObject(req.from, req.index)
      if (obj == null) return { reply: { ok: true, present: false }, data: null }
      // synced by the fold's last request (a flush of the layer), before the layer below may go
      await store.put(req.volume, req.index, obj, { epoch, ifAbsent: true })
      return { reply: { ok: true, present: true }, data: null }
    }
    case 'fence':
      await store.fence(req.volume, req.epoch)
      // a new writer is about to write the volume from wherever it was fenced in
      store.emit('fenced', { volume: req.volume, epoch: req.epoch })
      return { reply: { ok: true }, data: null }
    case 'freeze':
      await store.freeze(req.layers)
      return { reply: { ok: true }, data: null }
    case 'flush':
      // an agent of an earlier release names no volume: its flush takes every fsync error owed (store-syncs.ts)
      await store.flush(req.volume)
      return { reply: { ok: true }, data: null }
  }
}

/**
 * Sends one request to each node at once (`timeoutMs`: a bound on each answer, beyond
 * the replica's own timeout). Answers the nodes that failed, each with why.
 */
export async function callEach (transport: ReplicaTransport, nodes: readonly string[], req: ReplicaRequest, timeoutMs?: number): Promise<Array<{ node: string, why: string, moment: boolean, full?: true }>> {
  const failed: Array<{ node: string, why: string, moment: boolean, full?: true }> = []
  await Promise.all(nodes.map(async node => {
    let timer: NodeJS.Timeout | undefined
    try {
      const asked = transport.call(node, req)
      if (timeoutMs == null) { await asked; return }
      asked.catch(() => {})
      await Promise.race([asked, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new GvsError('unavailable', `no answer in ${timeoutMs} ms`)) }, timeoutMs) })])
    } catch (err) {
      // `moment`: it may pass (the node out of reach, restarting, its stream reset), as
      // against its answer (a newer writer's epoch there, a bad request, its disk)
      // `full`: its disk is full (the client is told ENOSPC, not EIO)
      failed.push({ node, why: (err as Error).message, moment: !(err instanceof GvsError) || err.transient || err.code === 'unavailable', ...(err instanceof GvsError && err.code === 'no-space' ? { full: true as const } : {}) })
    } finally { clearTimeout(timer) }
  }))
  return failed
}

/**
 * Every object of a volume one node holds, with its version, asked page by page (any
 * number fits: replica-protocol.ts). An agent of an earlier release ignores `from` and
 * answers with the whole list in one header.
 */
export async function listObjects (transport: ReplicaTransport, node: string, volume: string): Promise<Listed[]> {
  const out: Listed[] = []
  for (let from = 0; ;) {
    const { reply, data } = await transport.call(node, { op: 'list', volume, from })
    if (reply.count == null) return listedOf(reply)
    for (const e of decodeList(data, reply.count)) out.push(e)
    if (reply.more == null) return out
    if (reply.more <= from) throw new GvsError('io', `replica ${node}: the list of "${volume}" went back from ${from} to ${reply.more}`)
    from = reply.more
  }
}

export interface ReplicaServiceComponents {
  host: Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol' | 'peerId'>
  store: ObjectStore
  log: Logger
  /**
   * Whether membership holds the peer alive or suspect (default: always). A call to one
   * it does not fails at once, retryable: a dial to a stopped agent would wait out its
   * whole timeout, and the writer's retry places the object on the live nodes instead.
   */
  isLive?: (peer: string) => boolean
  /**
   * Asks whether the peer's agent answers at all (a libp2p ping), when calls to it wait
   * with nothing heard (peer-reach.ts). Default: never asked; calls wait out their timeout.
   */
  ping?: (peer: string, signal: AbortSignal) => Promise<unknown>
  /**
   * Resets this node's connections to the peer (a TCP reset, not a close): data queued
   * for it that the network did not take is dropped, never delivered late. Called as
   * the peer is found out of reach, when its calls fail and a writer goes on without
   * them: a write stuck in a closed connection's send queue went out again after the
   * cut healed (a closed socket keeps sending what it holds), possibly after newer
   * writes of the same blocks, and wrote old data over them on that copy. The next
   * probe then goes over a fresh connection too (one that lived through a cut may wait
   * out TCP's retransmission backoff, tens of seconds). Default: none.
   */
  resetConnections?: (peer: string, why: string) => void
  /** a node's name, for the log and health */
  nameOf?: (peer: string) => string
}

export interface ReplicaServiceInit {
  protocol?: string
  /** per-request deadline; a replica that does not answer in time counts as failed */
  timeoutMs?: number
  maxInboundStreams?: number
  /** requests and bytes in flight per peer and lane */
  limits?: ChannelLimits
  /** streams per peer for large reads and writes (default 16) */
  lanes?: number
}

/** how long a probe of a peer whose calls wait may take before the peer counts as out of reach */
const PROBE_TIMEOUT_MS = 4000

/** waits before the retries of a request whose stream went away */
const RETRY_DELAYS = [10, 250]

/** requests up to this many bytes of data share the batching lane */
const SMALL = 64 * 1024

/** streams per peer for whole-object copies: a 4 MiB copy takes 16 window round trips on one */
const BULK_LANES = 2

/** whole-object copies, and lists (a page is up to an object's size), travel apart from client I/O */
const bulk = (op: ReplicaRequest['op']): boolean => op === 'get' || op === 'put' || op === 'list'

export class ReplicaService implements ReplicaTransport {
  readonly self: string
  /** writes this node's store refused for want of room, for its health */
  readonly diskFull: DiskFull
  /** requests the store here refused for a fault of its own (store-refusals.ts) */
  readonly refusals: StoreRefusals
  private readonly c: ReplicaServiceComponents
  /** requests failing for a while (this node's disk full) fail one after another: a line a minute per peer and cause */
  private readonly repeats = new RepeatedLines()
  private readonly protocol: string
  private readonly timeoutMs: number
  private readonly maxInbound: number
  private readonly maxData: number
  private readonly limits: ChannelLimits | undefined
  private readonly lanes: number
  private nextLane = 0
  private nextBulk = 0
  private readonly channels = new Map<string, PeerChannel>()
  private readonly inbound = new Set<Stream>()
  /** peers whose calls wait unheard, probed; those found out of reach fail calls at once */
  private readonly reach = new PeerReach()
  private probeTimer: NodeJS.Timeout | null = null

  constructor (components: ReplicaServiceComponents, init: ReplicaServiceInit = {}) {
    this.c = components
    this.self = components.host.peerId.toString()
    this.diskFull = new DiskFull(components.store.dir)
    this.refusals = new StoreRefusals(components.store.dir)
    this.protocol = init.protocol ?? REPLICA_PROTOCOL
    this.timeoutMs = init.timeoutMs ?? 30_000
    this.maxInbound = init.maxInboundStreams ?? 256
    this.maxData = components.store.objectSize + MAX_HEADER
    this.limits = init.limits
    // 16, not 4: a write of 256 KiB fills a stream's window, so streams bound what is
    // in flight (in-process, 3 agents, R=2, 32 writes of 256 KiB at once: 4 -> 16 lanes
    // took writes from 25 to 32-40 MB/s and reads from 68-88 to 103-179 MB/s)
    this.lanes = Math.max(1, init.lanes ?? 16)
  }

  async start (): Promise<void> {
    // the quiet spell of a surplus copy counts from here at the earliest (object-uses.ts)
    objectUses(this.c.store)
    await this.c.host.handle(this.protocol, (stream, conn) => {
      const from = conn.remotePeer.toString()
      this.inbound.add(stream)
      stream.addEventListener('close', () => { this.inbound.delete(stream) })
      serveChannel(stream, {
        objectSize: this.c.store.objectSize,
        maxRequests: 1024,
        run: async (req, data) => await execute(this.c.store, req, data),
        failed: err => {
          this.noteRefused(err)
          if (err.code !== 'stale-epoch' && err.code !== 'frozen') this.repeats.log(this.c.log, 'warn', `${from}:${err.code}`, 'replica request failed', { from, error: err.message })
        }
      })
    }, { maxInboundStreams: this.maxInbound, maxOutboundStreams: this.maxInbound })
    // the one-request-per-stream protocol of earlier releases, for agents not yet upgraded
    await this.c.host.handle(REPLICA_PROTOCOL_V1, (stream, conn) => {
      void this.answerV1(stream, conn.remotePeer.toString())
    }, { maxInboundStreams: this.maxInbound, maxOutboundStreams: this.maxInbound })
  }

  async stop (): Promise<void> {
    await this.c.host.unhandle(this.protocol).catch(() => {})
    await this.c.host.unhandle(REPLICA_PROTOCOL_V1).catch(() => {})
    for (const ch of this.channels.values()) ch.close('the replica service stopped')
    this.channels.clear()
    for (const s of this.inbound) s.abort(new Error('the replica service stopped'))
    this.inbound.clear()
    if (this.probeTimer != null) clearInterval(this.probeTimer)
    this.probeTimer = null
  }

  /** a request to this node's store failed: for want of room, or a fault of its own, the node's health says so */
  private noteRefused (err: unknown): void {
    this.diskFull.note(err)
    this.refusals.note(err)
  }

  async call (peer: string, req: ReplicaRequest, data?: Uint8Array): Promise<CallResult> {
    if (peer === this.self) {
      try { return await execute(this.c.store, req, data ?? null) } catch (err) { this.noteRefused(err); throw err }
    }
    const ch = this.channel(peer, this.lane(req, data))
    for (let attempt = 0; ; attempt++) {
      if (this.c.isLive?.(peer) === false) throw new GvsError('unavailable', `replica ${peer} is not live (membership found it dead or gone)`, { transient: true })
      const down = this.reach.blocked(peer)
      if (down != null) throw new GvsError('unavailable', `replica ${peer} is out of reach from this node for ${Math.round((Date.now() - down.since) / 1000)} s (${down.why}), though membership holds it alive`, { transient: true, since: down.since })
      this.reach.begin(peer, Date.now())
      this.watchReach()
      let ok = false
      try {
        const r = await ch.request(req, data)
        ok = true
        return r
      } catch (err) {
        // a stream reset (a duplicate connection closed under it, a connection
        // replaced) is worth two more tries, the last after the connections settled:
        // every request is idempotent (writes carry their data and offset; a put never
        // replaces; a flush covers what was written)
        if (attempt >= RETRY_DELAYS.length || !(err instanceof GvsError) || err.code !== 'unavailable' || !/reset|closed/i.test(err.message)) throw err
      } finally {
        this.reach.end(peer, Date.now(), ok)
      }
      await sleep(RETRY_DELAYS[attempt])
    }
  }

  /** the peers this node's calls found out of reach though membership holds them alive, for health */
  outOfReach (): Array<{ peer: string, since: number, why: string }> {
    return this.reach.downPeers().map(([peer, d]) => ({ peer, since: d.since, why: d.why }))
  }

  /** the peer is probed at the next tick, calls waiting on it or not (membership suspects it) */
  probeSoon (peer: string): void {
    if (peer === this.self) return
    this.reach.want(peer, Date.now())
    this.watchReach()
  }

  /** why this node's calls cannot reach the peer now, or null */
  outOfReachWhy (peer: string): string | null {
    const d = this.reach.blocked(peer)
    return d == null ? null : d.why
  }

  /** probes, every half second while calls are in flight or a peer is down, the peers whose calls wait unheard */
  private watchReach (): void {
    if (this.probeTimer != null || this.c.ping == null) return
    this.probeTimer = setInterval(() => {
      const now = Date.now()
      for (const peer of this.reach.toProbe(now)) void this.probe(peer)
      if (!this.reach.busy() && this.probeTimer != null) { clearInterval(this.probeTimer); this.probeTimer = null }
    }, 500)
    this.probeTimer.unref()
  }

  private async probe (peer: string): Promise<void> {
    const name = this.c.nameOf?.(peer) ?? peer
    let why = ''
    let timer: NodeJS.Timeout | undefined
    try {
      // bounded here too: a ping that ignored its signal would leave the peer probing for ever
      await Promise.race([this.c.ping!(peer, AbortSignal.timeout(PROBE_TIMEOUT_MS)), new Promise((_resolve, reject) => { timer = setTimeout(() => { reject(new Error('timed out')) }, PROBE_TIMEOUT_MS + 500) })])
    } catch (err) {
      why = `no answer to a ping within ${PROBE_TIMEOUT_MS / 1000} s: ${(err as Error).message}`
    } finally { clearTimeout(timer) }
    // membership found it dead or gone meanwhile (dropPeer forgot it): not this watch's business
    // any more, and its connections are the dialer's (closing a fresh one would hinder its return)
    if (this.c.isLive?.(peer) === false || !this.reach.knows(peer)) { this.reach.forget(peer); return }
    const wasDown = this.reach.blocked(peer) != null
    // down already: the next probe goes over a fresh connection, not one that lived through the cut
    if (why !== '' && wasDown) this.resetConnections(peer, `${name} is still out of reach`)
    if (why === '') {
      this.reach.probed(peer, Date.now(), true)
      if (wasDown) this.c.log.info('replica peer in reach again', { peer: name })
      return
    }
    if (!this.reach.probed(peer, Date.now(), false, why)) return
    // calls waiting on it fail now (retryable): reads go to another copy, writes retry;
    // what they had sent and the network did not take is dropped with the connections
    this.c.log.warn('replica peer out of reach though membership holds it alive: calls to it fail at once until it answers again', { peer: name, why })
    this.closeChannels(peer, `${name} is out of reach (${why})`)
    this.resetConnections(peer, `${name} is out of reach (${why})`)
  }

  private resetConnections (peer: string, why: string): void {
    try { this.c.resetConnections?.(peer, why) } catch {}
  }

  /**
   * Membership found the peer dead or gone: the requests in flight to it fail now
   * (retryable), not when each times out. An agent stopped (SIGSTOP, a hung host) keeps
   * its connections open, and a write waiting on it held the writer's request until it
   * came back, however long.
   */
  dropPeer (peer: string): void {
    this.closeChannels(peer, `membership found ${peer} dead or gone`)
    this.reach.forget(peer)
  }

  private closeChannels (peer: string, why: string): void {
    for (const [key, ch] of this.channels) {
      if (!key.endsWith(`:${peer}`)) continue
      ch.close(why)
      this.channels.delete(key)
    }
  }

  private lane (req: ReplicaRequest, data: Uint8Array | undefined): string {
    if (bulk(req.op)) {
      this.nextBulk = (this.nextBulk + 1) % BULK_LANES
      return `bulk${this.nextBulk}`
    }
    const bytes = req.op === 'read' ? req.length : data?.length ?? 0
    if (bytes <= SMALL) return 'small'
    this.nextLane = (this.nextLane + 1) % this.lanes
    return `large${this.nextLane}`
  }

  private channel (peer: string, lane: string): PeerChannel {
    const key = `${lane}:${peer}`
    let ch = this.channels.get(key)
    if (ch == null) {
      ch = new PeerChannel(this.c.host, peer, { protocol: this.protocol, timeoutMs: this.timeoutMs, objectSize: this.c.store.objectSize, limits: this.limits, heard: () => { this.reach.heard(peer, Date.now()) } })
      this.channels.set(key, ch)
    }
    return ch
  }

  private async answerV1 (stream: Stream, from: string): Promise<void> {
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
        this.noteRefused(err)
        if (err.code !== 'stale-epoch' && err.code !== 'frozen') this.repeats.log(this.c.log, 'warn', `${from}:${err.code}`, 'replica request failed', { from, error: err.message })
      }
      await lp.write(encode(reply), { signal })
      if (data != null) await lp.write(data, { signal })
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
    }
  }
}
