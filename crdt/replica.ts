// One agent's copy of the cluster document: the only holder of the Automerge object.
// It writes through typed Writers, reads through validating Readers, and speaks the
// Automerge sync protocol with changes from peers checked on a fork first: a change
// that fails the schema is refused whole and the document stays as it was. It holds
// the document's core only (crdt/backend.ts), never Automerge's JS object tree.
// The protocol's steps on the core are crdt/sync-session.ts's; this file decides
// which a message takes and keeps the cache and clock in step with what it adopts.
import { createHash, randomBytes } from 'node:crypto'
import * as A from '@automerge/automerge'
import { genesisDoc, lineage, structureProblem, MIGRATIONS, type Lineage, type Migration } from './genesis.ts'
import { isKind, type Kind, type Objects } from './schema.ts'
import { Reader, ResolvedCache, type InvalidHandler } from './reader.ts'
import { Writer, applyOps } from './writer.ts'
import { valuesAt, keysAt, schemaOf, type RawDoc } from './values.ts'
import { loadCore, treeOf, type Core } from './backend.ts'
import * as session from './sync-session.ts'
import { sameHeads, type PeerSync, type ReceiveResult } from './sync-session.ts'
import { Hlc, MAX_FUTURE_MS } from './hlc.ts'
import { futureOverride, RULE_OF } from './conflicts.ts'

export interface ReplicaOptions {
  clusterId: string
  /** this node's id: written as `by` on every object it writes */
  nodeId: string
  /** Automerge actor id (hex); default: a fresh one per run (see actorFor) */
  actor?: string
  migrations?: readonly Migration[]
  onInvalid?: InvalidHandler
  /** the wall clock (for `at` stamps, through a hybrid logical clock) */
  now?: () => number
  /** the hybrid logical clock itself (default: a new one over `now`) */
  clock?: Hlc
}

export class SchemaNewerError extends Error {
  override name = 'SchemaNewerError'
}

/**
 * A new actor id for every run: 8 bytes naming the node, 8 random. Reusing an actor
 * after a crash could reissue a sequence number that peers already hold with other
 * content, which Automerge cannot merge.
 */
export function actorFor (nodeId: string): string {
  return createHash('sha256').update(nodeId).digest('hex').slice(0, 16) + randomBytes(8).toString('hex')
}

export class Replica {
  readonly clusterId: string
  readonly nodeId: string
  private actorId: string
  readonly lineage: Lineage
  private core: Core
  /** bumped whenever the document's content may have changed */
  private version = 0
  private reader?: Reader
  private readonly cache = new ResolvedCache()
  /** hashes known to be in the history (it only grows, so this never goes stale) */
  private readonly known = new Set<string>()
  private readonly onInvalid: InvalidHandler
  /** stamps `at` on this replica's writes; fed by every value that arrives from peers */
  readonly clock: Hlc
  private readonly opts: ReplicaOptions
  /** objects a fork's changes touched (for the parent's cache when it merges them) */
  private readonly touchedKeys: Array<[string, string]> = []
  /** contests that a value stamped in the future won, for the agent to settle (see futureOverride) */
  private readonly futureContests = new Map<string, { kind: Kind, key: string }>()

  private constructor (opts: ReplicaOptions, core: Core, l: Lineage, actor: string) {
    this.opts = opts
    this.clusterId = opts.clusterId
    this.nodeId = opts.nodeId
    this.core = core
    this.lineage = l
    this.actorId = actor
    this.onInvalid = opts.onInvalid ?? (() => {})
    this.clock = opts.clock ?? new Hlc(opts.now ?? Date.now)
  }

  get actor (): string { return this.actorId }

  static create (opts: ReplicaOptions): Replica {
    const l = lineage(opts.clusterId, opts.migrations ?? MIGRATIONS)
    const actor = opts.actor ?? actorFor(opts.nodeId)
    return new Replica(opts, A.getBackend(genesisDoc(l, actor)), l, actor)
  }

  /** Loads a saved document (throws if it is damaged). Call structureProblem() after. */
  static load (opts: ReplicaOptions, saved: Uint8Array): Replica {
    const l = lineage(opts.clusterId, opts.migrations ?? MIGRATIONS)
    const actor = opts.actor ?? actorFor(opts.nodeId)
    const r = new Replica(opts, loadCore(saved, actor), l, actor)
    r.observeAll()
    return r
  }

  /**
   * A copy to make changes on before they are durable: changes go to the fork, its
   * bytes to disk, and only then does merge() bring them here (discard() if the disk
   * failed, and nothing of them was ever visible). Shares this replica's clock.
   */
  fork (): Replica {
    const f = new Replica({ ...this.opts, clock: this.clock }, this.core.fork(this.actorId), this.lineage, this.actorId)
    f.forkBase = this.heads()
    return f
  }

  /** heads of the replica a fork was taken from, when it was taken */
  private forkBase?: string[]

  /** Takes in a fork's changes (and frees the fork). */
  merge (fork: Replica): void {
    if (fork.forkBase != null && sameHeads(this.heads(), fork.forkBase)) {
      // nothing arrived here meanwhile (the usual case): the fork is the new document
      this.adopt(fork.core)
    } else {
      this.core.merge(fork.core)
      this.changed()
      this.cache.invalidateMulti()
      fork.discard()
    }
    for (const [kind, key] of fork.touchedKeys) this.cache.invalidate(kind, key)
  }

  /** Frees a fork whose changes are not wanted. */
  discard (): void {
    this.core.free()
  }

  /**
   * Takes a fresh actor id: after a fork's changes were discarded, their sequence
   * numbers must not be reused for other content (a torn copy of them may survive
   * on disk, and Automerge cannot merge two changes with one actor and number).
   */
  rotateActor (): void {
    this.actorId = actorFor(this.nodeId)
    this.adopt(this.core.fork(this.actorId))
  }

  /** Feeds the clock with every stamp in the document (after a load). */
  observeAll (): void {
    for (const [kind, o] of this.lineage.objectIds) {
      if (kind === 'meta') continue
      let keys: string[] = []
      try {
        keys = keysAt(this.core, o.id)
      } catch {} // a collection a later migration adds: not in this document yet
      for (const key of keys) this.observeKey(kind, o.id, key)
    }
  }

  /** Contests a future-stamped value won since the last call (each once). */
  takeFutureContests (): Array<{ kind: Kind, key: string }> {
    const out = [...this.futureContests.values()]
    this.futureContests.clear()
    return out
  }

  private noteFuture (kind: Kind, key: string, collId: string): void {
    // only a contest under latest-write can be won by a future stamp: leases (highest
    // epoch) and single values are skipped without reading and validating them again
    if (this.futureContests.size > 10_000 || RULE_OF[kind] !== 'latest-write') return
    if (this.core.getAll(collId, key).length < 2) return
    const now = (this.opts.now ?? Date.now)()
    if (futureOverride(kind, this.read().candidates(kind, key), now, MAX_FUTURE_MS) != null) this.futureContests.set(`${kind}\0${key}`, { kind, key })
  }

  private observeKey (kind: string, collId: string, key: string, values = valuesAt(this.core, collId, key)): void {
    for (const raw of values) {
      const at = (raw as { at?: unknown } | null)?.at
      if (typeof at === 'number') this.clock.observe(at)
    }
  }

  /** Adds saved changes (a log record); throws and leaves the document as it was if they are damaged. */
  loadIncremental (data: Uint8Array): void {
    const fork = this.core.fork(this.actor)
    try {
      fork.loadIncremental(data)
    } catch (err) {
      fork.free()
      throw err
    }
    this.adopt(fork)
    this.cache.clear()
  }

  heads (): string[] { return this.core.getHeads() }

  /**
   * true if every hash is known without asking Automerge: our own heads, or heads
   * hasHeads found before. False may still be in the history (ask hasHeads).
   */
  knowsHeads (heads: string[]): boolean {
    const missing = heads.filter(h => !this.known.has(h))
    if (missing.length === 0) return true
    const mine = this.core.getHeads()
    return missing.every(h => mine.includes(h))
  }

  /** the last heads hasHeads found missing, and in which version of the document */
  private lacking?: { version: number, ask: string }

  /** true if every hash is in the document's history (peers ask this for every advert) */
  hasHeads (heads: string[]): boolean {
    const missing = heads.filter(h => !this.known.has(h))
    if (missing.length === 0) return true
    // the same unknown heads asked again of the same document (many peers announce
    // them): the answer is still no, without Automerge throwing inside (costly)
    const ask = missing.join()
    if (this.lacking?.version === this.version && this.lacking.ask === ask) return false
    let ok = false
    try {
      // getMissingDeps names the given heads the history lacks, without exporting the
      // changes it has (A.hasHeads builds each one's bytes: 9 % of a grid's CPU). It
      // does not name a change that waits in the queue for its own dependencies: with
      // anything queued the answer would be wrong (a message dropped as known could be
      // the one carrying those dependencies), so then the answer is no
      if (this.core.getMissingDeps([]).length === 0) {
        const lacks = new Set(this.core.getMissingDeps(missing))
        ok = !missing.some(h => lacks.has(h))
      }
    } catch {}
    if (!ok) this.lacking = { version: this.version, ask }
    if (ok) {
      if (this.known.size > 4096) this.known.clear()
      for (const h of missing) this.known.add(h)
    }
    return ok
  }

  /**
   * Which of `keys` a change since `heads` put or deleted in the `kind` collection itself,
   * and which the collection no longer holds (valid or not: rv45), with the heads it
   * looked up to; null if the history lacks `heads`. Decodes each such change: for rare
   * questions about recent history only (layer-reclaim.ts: a volume made and destroyed in
   * one sync, which no read of the document ever shows).
   */
  keysWrittenSince (heads: readonly string[], kind: Kind, keys: ReadonlySet<string>): { found: Set<string>, heads: string[] } | null {
    const coll = this.lineage.objectIds.get(kind)?.id
    if (coll == null || !this.hasHeads([...heads])) return null
    const found = new Set<string>()
    const now = this.core.getHeads()
    for (const change of this.core.getChanges([...heads])) {
      for (const op of A.decodeChange(change).ops) if (op.obj === coll && keys.has(op.key)) found.add(op.key)
    }
    for (const k of keysAt(this.core, coll)) found.delete(k)
    return { found, heads: now }
  }

  /** the schema version the document is at */
  get schema (): number { return schemaOf(this.core) }
  /** the document was migrated by a newer agent: this one must not write */
  get schemaNewer (): boolean { return this.schema > this.lineage.target }

  structureProblem (): string | null { return structureProblem(treeOf<RawDoc>(this.core), this.lineage) }

  /** Applies the structural migrations the document lacks; returns the versions applied (crdt/genesis.ts migrate, on the core). */
  migrate (): number[] {
    const have = this.schema
    const missing = this.lineage.changes.filter(c => c.to > have)
    if (missing.length === 0) return []
    this.core.applyChanges(missing.map(c => c.change))
    this.changed()
    this.cache.clear()
    return missing.map(c => c.to)
  }

  /** A validating reader of the current version (do not keep it across changes). */
  read (): Reader {
    this.reader ??= new Reader(this.core, this.lineage.objectIds, this.onInvalid, this.cache)
    return this.reader
  }

  /**
   * Runs `fn` with a Writer and commits what it asked for as one change. Throws
   * (InvalidObjectError, NotFoundError, SchemaNewerError) before anything is written.
   */
  change<T> (fn: (w: Writer) => T, message?: string): { result: T, changed: boolean } {
    if (this.schemaNewer) throw new SchemaNewerError(`the cluster document is at schema ${this.schema}; this agent knows up to ${this.lineage.target}: upgrade it before writing`)
    const w = new Writer(this.read(), this.nodeId, this.clock.tick())
    const result = fn(w)
    if (w.ops.length === 0) return { result, changed: false }
    const before = this.heads()
    try {
      applyOps(this.core, this.lineage.objectIds, w.ops)
    } catch (err) {
      this.core.rollback()
      throw err
    }
    // the time A.change stamps (seconds)
    this.core.commit(message ?? null, Math.floor(Date.now() / 1000))
    this.changed()
    for (const op of w.ops) {
      this.cache.invalidate(op.kind, op.key)
      this.touchedKeys.push([op.kind, op.key])
    }
    return { result, changed: !sameHeads(before, this.heads()) }
  }

  /** The whole document, compressed (a snapshot). */
  save (): Uint8Array { return this.core.save() }

  /** The changes made since `heads`, to append to a log. */
  saveSince (heads: string[]): Uint8Array { return this.core.saveSince(heads) }

  stats (): { changes: number, ops: number, actors: number } {
    const s = this.core.stats()
    return { changes: s.numChanges, ops: s.numOps, actors: s.numActors }
  }

  newPeer (): PeerSync { return session.newPeer() }

  /** Forget what we believe a peer has (it will tell us again); for a stuck or oversized state. */
  resetPeer (p: PeerSync): void { session.resetPeer(p) }

  /** true when the peer's last reported heads are ours */
  peerInSync (p: PeerSync): boolean {
    const theirs = session.peerHeads(p)
    return theirs != null && sameHeads(theirs, this.heads())
  }

  /** The next sync message for this peer, or null when there is nothing to say. */
  generate (p: PeerSync): Uint8Array | null { return session.generate(this.core, p) }

  /** Applies a peer's sync message, or refuses it whole (the caller then drops the peer). */
  receive (p: PeerSync, msg: Uint8Array): ReceiveResult {
    const decoded = session.decode(msg)
    if ('ok' in decoded) return decoded
    // a replica that has nothing yet, offered a whole document: load it (much faster)
    if (session.offersWholeDocument(decoded) && sameHeads(this.heads(), this.lineage.heads)) {
      const r = this.receiveWholeDocument(p, decoded.changes[0]!)
      if (r != null) return r
    }
    // Changes we hold already: the sender's heads are in our history, so is every
    // change it took from that history. Another session brought them first (with
    // several sessions, half the messages of a placement burst): drop them unread and
    // take the message's heads and filters only, without forking and validating the
    // document. A sender that lies about its heads loses only its own extra changes.
    if (decoded.changes.length > 0 && decoded.heads.length > 0 && this.hasHeads(decoded.heads)) {
      const stripped = session.withoutChanges(decoded)
      return stripped instanceof Uint8Array ? session.receiveHeads(this.core, p, stripped) : stripped
    }
    // heads, needs and bloom filters only: the document cannot change
    if (decoded.changes.length === 0) return session.receiveHeads(this.core, p, msg)
    const before = this.heads()
    const countBefore = this.core.stats().numChanges
    const r = session.receiveOnFork(this.core, this.actor, this.lineage, p, msg)
    if (!r.ok) return r
    this.adopt(r.fork)
    if (r.root) this.cache.clear()
    this.cache.invalidateMulti()
    for (const [kind, keys] of r.touched) {
      const collId = this.lineage.objectIds.get(kind)?.id
      for (const key of keys) {
        this.cache.invalidate(kind, key)
        if (collId == null) continue
        // the values just validated are what a Reader would read: kept, not read again
        const values = r.checked.get(kind)?.get(key)
        if (values != null && isKind(kind)) this.cache.prime(kind, key, values as Array<Objects[Kind]>)
        this.observeKey(kind, collId, key, values)
        if (isKind(kind)) this.noteFuture(kind, key, collId)
      }
    }
    r.settle()
    // a message may carry many changes in one compressed chunk: count what was added
    return { ok: true, changes: this.core.stats().numChanges - countBefore, changed: !sameHeads(before, this.heads()) }
  }

  /** Adopts a whole document after validating every object in it; null to fall back to the normal path. */
  private receiveWholeDocument (p: PeerSync, chunk: Uint8Array): ReceiveResult | null {
    const loaded = session.loadWholeDocument(chunk, this.actor, this.lineage)
    if (loaded == null || !loaded.ok) return loaded
    const before = this.core.stats().numChanges
    this.adopt(loaded.core)
    this.cache.clear()
    this.observeAll()
    // the message's heads and needs were not processed: start the conversation afresh
    p.state = A.initSyncState()
    return { ok: true, changes: this.core.stats().numChanges - before, changed: true }
  }

  /** Replace the document with a fork that took its place (frees the old one's memory). */
  private adopt (core: Core): void {
    const old = this.core
    this.core = core
    this.changed()
    old.free()
  }

  /** The content may have changed: the current Reader is stale. */
  private changed (): void {
    this.version++
    if (this.reader != null) this.reader.stale = true
    this.reader = undefined
  }
}
