// One agent's copy of the cluster document: the only holder of the Automerge object.
// It writes through typed Writers, reads through validating Readers, and speaks the
// Automerge sync protocol with changes from peers checked on a fork first: a change
// that fails the schema is refused whole and the document stays as it was.
import { createHash, randomBytes } from 'node:crypto'
import * as A from '@automerge/automerge'
import { genesisDoc, lineage, migrate, structureProblem, docSchema, MIGRATIONS, type Lineage, type Migration } from './genesis.ts'
import { isKind, validateObject, type Kind } from './schema.ts'
import { Reader, ResolvedCache, type InvalidHandler } from './reader.ts'
import { Writer, applyOps } from './writer.ts'
import { plain, valuesAt, keysAt, type AmDoc } from './values.ts'
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

export type RejectReason = 'malformed' | 'schema'
export type ReceiveResult =
  /** `changes`: how many changes were added to the document */
  | { ok: true, changes: number, changed: boolean }
  | { ok: false, reason: RejectReason, detail: string }

/** Sync state for one peer. Opaque outside this module; dropped with the session. */
export interface PeerSync { state: A.SyncState }

export class SchemaNewerError extends Error {
  override name = 'SchemaNewerError'
}

/** Automerge chunk type byte (after 4 magic and 4 checksum bytes) of a whole document */
const DOCUMENT_CHUNK = 0
/** Bound on remembered sent-change hashes per peer; past it the state is reset to its shared heads. */
const MAX_SENT_HASHES = 4096

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
  private doc: AmDoc
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

  private constructor (opts: ReplicaOptions, doc: AmDoc, l: Lineage, actor: string) {
    this.opts = opts
    this.clusterId = opts.clusterId
    this.nodeId = opts.nodeId
    this.doc = doc
    this.lineage = l
    this.actorId = actor
    this.onInvalid = opts.onInvalid ?? (() => {})
    this.clock = opts.clock ?? new Hlc(opts.now ?? Date.now)
  }

  get actor (): string { return this.actorId }

  static create (opts: ReplicaOptions): Replica {
    const l = lineage(opts.clusterId, opts.migrations ?? MIGRATIONS)
    const actor = opts.actor ?? actorFor(opts.nodeId)
    return new Replica(opts, genesisDoc(l, actor), l, actor)
  }

  /** Loads a saved document (throws if it is damaged). Call structureProblem() after. */
  static load (opts: ReplicaOptions, saved: Uint8Array): Replica {
    const l = lineage(opts.clusterId, opts.migrations ?? MIGRATIONS)
    const actor = opts.actor ?? actorFor(opts.nodeId)
    const r = new Replica(opts, A.load<AmDoc>(saved, { actor }) as AmDoc, l, actor)
    r.observeAll()
    return r
  }

  /**
   * A copy to make changes on before they are durable: changes go to the fork, its
   * bytes to disk, and only then does merge() bring them here (discard() if the disk
   * failed, and nothing of them was ever visible). Shares this replica's clock.
   */
  fork (): Replica {
    const f = new Replica({ ...this.opts, clock: this.clock }, A.clone(this.doc, { actor: this.actorId }), this.lineage, this.actorId)
    f.forkBase = this.heads()
    return f
  }

  /** heads of the replica a fork was taken from, when it was taken */
  private forkBase?: string[]

  /** Takes in a fork's changes (and frees the fork). */
  merge (fork: Replica): void {
    if (fork.forkBase != null && sameHeads(this.heads(), fork.forkBase)) {
      // nothing arrived here meanwhile (the usual case): the fork is the new document
      this.adopt(fork.doc)
    } else {
      this.setDoc(A.merge(this.doc, fork.doc))
      fork.discard()
    }
    for (const [kind, key] of fork.touchedKeys) this.cache.invalidate(kind, key)
  }

  /** Frees a fork whose changes are not wanted. */
  discard (): void {
    A.free(this.doc)
  }

  /**
   * Takes a fresh actor id: after a fork's changes were discarded, their sequence
   * numbers must not be reused for other content (a torn copy of them may survive
   * on disk, and Automerge cannot merge two changes with one actor and number).
   */
  rotateActor (): void {
    this.actorId = actorFor(this.nodeId)
    this.adopt(A.clone(this.doc, { actor: this.actorId }))
  }

  /** Feeds the clock with every stamp in the document (after a load). */
  observeAll (): void {
    for (const [kind, o] of this.lineage.objectIds) {
      if (kind === 'meta' || this.doc[kind] == null) continue
      let keys: string[] = []
      try {
        keys = keysAt(this.doc, o.id)
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
    if (A.getBackend(this.doc).getAll(collId, key).length < 2) return
    const now = (this.opts.now ?? Date.now)()
    if (futureOverride(kind, this.read().candidates(kind, key), now, MAX_FUTURE_MS) != null) this.futureContests.set(`${kind}\0${key}`, { kind, key })
  }

  private observeKey (kind: string, collId: string, key: string): void {
    for (const raw of valuesAt(this.doc, kind, collId, key)) {
      const at = (raw as { at?: unknown } | null)?.at
      if (typeof at === 'number') this.clock.observe(at)
    }
  }

  /** Adds saved changes (a log record); throws and leaves the document as it was if they are damaged. */
  loadIncremental (data: Uint8Array): void {
    const fork = A.clone(this.doc, { actor: this.actor })
    let out: AmDoc
    try {
      out = A.loadIncremental(fork, data)
    } catch (err) {
      A.free(fork)
      throw err
    }
    this.adopt(out)
    this.cache.clear()
  }

  heads (): string[] { return A.getHeads(this.doc) }

  /**
   * true if every hash is known without asking Automerge: our own heads, or heads
   * hasHeads found before. False may still be in the history (ask hasHeads).
   */
  knowsHeads (heads: string[]): boolean {
    const missing = heads.filter(h => !this.known.has(h))
    if (missing.length === 0) return true
    const mine = A.getHeads(this.doc)
    return missing.every(h => mine.includes(h))
  }

  /** the last heads hasHeads found missing, and in which version of the document */
  private lacking?: { doc: AmDoc, ask: string }

  /** true if every hash is in the document's history (peers ask this for every advert) */
  hasHeads (heads: string[]): boolean {
    const missing = heads.filter(h => !this.known.has(h))
    if (missing.length === 0) return true
    // the same unknown heads asked again of the same document (many peers announce
    // them): the answer is still no, without Automerge throwing inside (costly)
    const ask = missing.join()
    if (this.lacking?.doc === this.doc && this.lacking.ask === ask) return false
    let ok = false
    try {
      // getMissingDeps names the given heads the history lacks, without exporting the
      // changes it has (A.hasHeads builds each one's bytes: 9 % of a grid's CPU)
      const lacks = new Set(A.getMissingDeps(this.doc, missing))
      ok = !missing.some(h => lacks.has(h))
    } catch {}
    if (!ok) this.lacking = { doc: this.doc, ask }
    if (ok) {
      if (this.known.size > 4096) this.known.clear()
      for (const h of missing) this.known.add(h)
    }
    return ok
  }

  /** the schema version the document is at */
  get schema (): number { return docSchema(this.doc) }
  /** the document was migrated by a newer agent: this one must not write */
  get schemaNewer (): boolean { return this.schema > this.lineage.target }

  structureProblem (): string | null { return structureProblem(this.doc, this.lineage) }

  /** Applies the structural migrations the document lacks; returns the versions applied. */
  migrate (): number[] {
    const { doc, applied } = migrate(this.doc, this.lineage)
    if (applied.length > 0) {
      this.setDoc(doc)
      this.cache.clear()
    }
    return applied
  }

  /** A validating reader of the current version (do not keep it across changes). */
  read (): Reader {
    this.reader ??= new Reader(this.doc, this.lineage.objectIds, this.onInvalid, this.cache)
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
    this.setDoc(A.change(this.doc, message == null ? {} : { message }, d => applyOps(d, w.ops)))
    for (const op of w.ops) {
      this.cache.invalidate(op.kind, op.key)
      this.touchedKeys.push([op.kind, op.key])
    }
    return { result, changed: !sameHeads(before, this.heads()) }
  }

  /** The whole document, compressed (a snapshot). */
  save (): Uint8Array { return A.save(this.doc) }

  /** The changes made since `heads`, to append to a log. */
  saveSince (heads: string[]): Uint8Array { return A.saveSince(this.doc, heads) }

  stats (): { changes: number, ops: number, actors: number } {
    const s = A.stats(this.doc)
    return { changes: s.numChanges, ops: s.numOps, actors: s.numActors }
  }

  newPeer (): PeerSync { return { state: A.initSyncState() } }

  /** Forget what we believe a peer has (it will tell us again); for a stuck or oversized state. */
  resetPeer (p: PeerSync): void {
    p.state = A.decodeSyncState(A.encodeSyncState(p.state))
  }

  /** true when the peer's last reported heads are ours */
  peerInSync (p: PeerSync): boolean {
    const theirs = (p.state as { theirHeads?: string[] | null }).theirHeads
    return theirs != null && sameHeads(theirs, this.heads())
  }

  /** The next sync message for this peer, or null when there is nothing to say. */
  generate (p: PeerSync): Uint8Array | null {
    const [state, msg] = A.generateSyncMessage(this.doc, p.state)
    p.state = state
    this.bound(p)
    return msg
  }

  /** Applies a peer's sync message, or refuses it whole (the caller then drops the peer). */
  receive (p: PeerSync, msg: Uint8Array): ReceiveResult {
    let decoded: A.DecodedSyncMessage
    try {
      decoded = A.decodeSyncMessage(msg)
    } catch (err) {
      return { ok: false, reason: 'malformed', detail: (err as Error).message }
    }
    const chunks = decoded.changes
    let changes = chunks.length
    // a replica that has nothing yet, offered a whole document: load it (much faster)
    if (changes === 1 && chunks[0]![8] === DOCUMENT_CHUNK && sameHeads(this.heads(), this.lineage.heads)) {
      const r = this.receiveWholeDocument(p, chunks[0]!)
      if (r != null) return r
    }
    // Changes we hold already: the sender's heads are in our history, so is every
    // change it took from that history. Another session brought them first (with
    // several sessions, half the messages of a placement burst): drop them unread and
    // take the message's heads and filters only, without forking and validating the
    // document. A sender that lies about its heads loses only its own extra changes.
    if (changes > 0 && decoded.heads.length > 0 && this.hasHeads(decoded.heads)) {
      try {
        msg = A.encodeSyncMessage({ ...decoded, changes: [] })
      } catch (err) {
        return { ok: false, reason: 'malformed', detail: (err as Error).message }
      }
      changes = 0
    }
    if (changes === 0) {
      // heads, needs and bloom filters only: the document cannot change
      try {
        const [doc, state] = A.receiveSyncMessage(this.doc, p.state, msg)
        p.state = state
        if (doc !== this.doc) this.setDoc(doc)
      } catch (err) {
        return { ok: false, reason: 'malformed', detail: (err as Error).message }
      }
      this.bound(p)
      return { ok: true, changes: 0, changed: false }
    }
    const before = this.heads()
    const countBefore = A.stats(this.doc).numChanges
    const fork = A.clone(this.doc, { actor: this.actor })
    const patches: A.Patch[] = []
    let out: AmDoc
    let state: A.SyncState
    try {
      [out, state] = A.receiveSyncMessage(fork, p.state, msg, { patchCallback: ps => { patches.push(...ps) } })
    } catch (err) {
      A.free(fork)
      return { ok: false, reason: 'malformed', detail: (err as Error).message }
    }
    const { problem, root, touched } = this.checkPatches(out, patches)
    if (problem != null) {
      A.free(out)
      return { ok: false, reason: 'schema', detail: problem }
    }
    this.adopt(out)
    if (root) this.cache.clear()
    for (const [kind, keys] of touched) {
      const collId = this.lineage.objectIds.get(kind)?.id
      for (const key of keys) {
        this.cache.invalidate(kind, key)
        if (collId == null) continue
        this.observeKey(kind, collId, key)
        if (isKind(kind)) this.noteFuture(kind, key, collId)
      }
    }
    p.state = state
    this.bound(p)
    // a message may carry many changes in one compressed chunk: count what was added
    return { ok: true, changes: A.stats(this.doc).numChanges - countBefore, changed: !sameHeads(before, this.heads()) }
  }

  /** Adopts a whole document after validating every object in it; null to fall back to the normal path. */
  private receiveWholeDocument (p: PeerSync, chunk: Uint8Array): ReceiveResult | null {
    let doc: AmDoc
    try {
      doc = A.load<AmDoc>(chunk, { actor: this.actor }) as AmDoc
    } catch {
      return null
    }
    if (!A.hasHeads(doc, this.lineage.heads)) {
      A.free(doc)
      return null
    }
    let problem = structureProblem(doc, this.lineage)
    if (problem == null && docSchema(doc) <= this.lineage.target) {
      const check = new Reader(doc, this.lineage.objectIds, (kind, key, bad) => { problem ??= `${kind}/${key}: ${bad}` })
      check.counts()
    }
    if (problem != null) {
      A.free(doc)
      return { ok: false, reason: 'schema', detail: problem }
    }
    const before = A.stats(this.doc).numChanges
    this.adopt(doc)
    this.cache.clear()
    this.observeAll()
    // the message's heads and needs were not processed: start the conversation afresh
    p.state = A.initSyncState()
    return { ok: true, changes: A.stats(this.doc).numChanges - before, changed: true }
  }

  /** What incoming patches touched, and what they did wrong to `doc` (null if every touched object is valid). */
  private checkPatches (doc: AmDoc, patches: A.Patch[]): { problem: string | null, root: boolean, touched: Map<string, Set<string>> } {
    let root = false
    const touched = new Map<string, Set<string>>()
    for (const { path } of patches) {
      const [kind, key] = path
      if (path.length < 2 || kind === 'meta') {
        root = true
        continue
      }
      if (typeof kind !== 'string' || typeof key !== 'string') return { problem: `unexpected path ${JSON.stringify(path)}`, root, touched }
      let s = touched.get(kind)
      if (s == null) touched.set(kind, s = new Set())
      s.add(key)
    }
    const fail = (problem: string): { problem: string, root: boolean, touched: Map<string, Set<string>> } => ({ problem, root, touched })
    if (root) {
      const bad = structureProblem(doc, this.lineage)
      if (bad != null) return fail(bad)
    }
    // a newer schema may have changed what objects look like: let readers judge
    if (docSchema(doc) > this.lineage.target) return { problem: null, root, touched }
    for (const [kind, keys] of touched) {
      if (!isKind(kind)) return fail(`unknown collection "${kind}"`)
      const collId = this.lineage.objectIds.get(kind)!.id
      for (const key of keys) {
        for (const raw of valuesAt(doc, kind, collId, key)) {
          const bad = validateObject(kind, key, plain(raw))
          if (bad != null) return fail(`${kind}/${key}: ${bad}`)
        }
      }
    }
    return { problem: null, root, touched }
  }

  private bound (p: PeerSync): void {
    const sent = (p.state as unknown as { sentHashes?: Record<string, unknown> }).sentHashes
    if (sent != null && Object.keys(sent).length > MAX_SENT_HASHES) this.resetPeer(p)
  }

  /** Replace the document with a fork that took its place (frees the old one's memory). */
  private adopt (doc: AmDoc): void {
    const old = this.doc
    this.setDoc(doc)
    A.free(old)
  }

  private setDoc (doc: AmDoc): void {
    this.doc = doc
    if (this.reader != null) this.reader.stale = true
    this.reader = undefined
  }
}

export function sameHeads (a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false
  const s = new Set(a)
  return b.every(h => s.has(h))
}
