// The Automerge sync protocol on a document core, one peer's session at a time: the
// session state, the next message for a peer, and the stages a peer's message goes
// through (decoded, stripped of changes we hold, applied to a fork and validated
// there, or loaded as a whole document). The Replica decides which stage a message
// takes and adopts what comes out (crdt/replica.ts); nothing here touches its cache.
import * as A from '@automerge/automerge'
import type { Lineage } from './genesis.ts'
import { loadCore, syncIn, syncOut, type Core } from './backend.ts'
import { checkPatches, checkWhole, type Checked } from './incoming.ts'

export type RejectReason = 'malformed' | 'schema'
export type ReceiveResult =
  /** `changes`: how many changes were added to the document */
  | { ok: true, changes: number, changed: boolean }
  | { ok: false, reason: RejectReason, detail: string }
export type Rejected = Extract<ReceiveResult, { ok: false }>

/** Sync state for one peer. Opaque outside crdt/; dropped with the session. */
export interface PeerSync { state: A.SyncState }

/** Automerge chunk type byte (after 4 magic and 4 checksum bytes) of a whole document */
const DOCUMENT_CHUNK = 0
/** Bound on remembered sent-change hashes per peer; past it the state is reset to its shared heads. */
const MAX_SENT_HASHES = 4096

export function sameHeads (a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false
  const s = new Set(a)
  return b.every(h => s.has(h))
}

function malformed (err: unknown): Rejected {
  return { ok: false, reason: 'malformed', detail: (err as Error).message }
}

export function newPeer (): PeerSync { return { state: A.initSyncState() } }

/** Forget what we believe a peer has (it will tell us again); for a stuck or oversized state. */
export function resetPeer (p: PeerSync): void {
  p.state = A.decodeSyncState(A.encodeSyncState(p.state))
}

/** the heads the peer last reported, if any */
export function peerHeads (p: PeerSync): string[] | null {
  return (p.state as { theirHeads?: string[] | null }).theirHeads ?? null
}

function bound (p: PeerSync): void {
  const sent = (p.state as unknown as { sentHashes?: Record<string, unknown> }).sentHashes
  if (sent != null && Object.keys(sent).length > MAX_SENT_HASHES) resetPeer(p)
}

/** The next sync message for this peer, or null when there is nothing to say. */
export function generate (core: Core, p: PeerSync): Uint8Array | null {
  const s = syncIn(p.state)
  let msg: Uint8Array | null
  try {
    msg = core.generateSyncMessage(s as never)
  } finally {
    p.state = syncOut(s)
  }
  bound(p)
  return msg
}

export function decode (msg: Uint8Array): A.DecodedSyncMessage | Rejected {
  try {
    return A.decodeSyncMessage(msg)
  } catch (err) {
    return malformed(err)
  }
}

/** the message's changes are one chunk holding a whole document */
export function offersWholeDocument (m: A.DecodedSyncMessage): boolean {
  return m.changes.length === 1 && m.changes[0]![8] === DOCUMENT_CHUNK
}

/** The message re-encoded without its changes (heads, needs and filters kept). */
export function withoutChanges (m: A.DecodedSyncMessage): Uint8Array | Rejected {
  try {
    return A.encodeSyncMessage({ ...m, changes: [] })
  } catch (err) {
    return malformed(err)
  }
}

/** A message of heads, needs and bloom filters only: the session moves on, the document cannot change. */
export function receiveHeads (core: Core, p: PeerSync, msg: Uint8Array): ReceiveResult {
  const s = syncIn(p.state)
  try {
    core.receiveSyncMessage(s as never, msg)
  } catch (err) {
    s.free()
    return malformed(err)
  }
  p.state = syncOut(s)
  bound(p)
  return { ok: true, changes: 0, changed: false }
}

export interface Received extends Omit<Checked, 'problem'> {
  ok: true
  /** the core with the message applied, validated: for the caller to adopt */
  fork: Core
  /** moves the session on past the message: call once the fork is adopted */
  settle: () => void
}

/** Applies a message with changes to a fork of `core` and validates what they touched; `core` is left as it was. */
export function receiveOnFork (core: Core, actor: string, l: Lineage, p: PeerSync, msg: Uint8Array): Received | Rejected {
  // on a fork of the core, whose diff then names exactly what the message changed
  const fork = core.fork(actor)
  fork.updateDiffCursor()
  const s = syncIn(p.state)
  let patches: A.Patch[]
  try {
    fork.receiveSyncMessage(s as never, msg)
    patches = fork.diffIncremental()
  } catch (err) {
    s.free()
    fork.free()
    return malformed(err)
  }
  const { problem, ...check } = checkPatches(fork, l, patches)
  if (problem != null) {
    s.free()
    fork.free()
    return { ok: false, reason: 'schema', detail: problem }
  }
  return { ok: true, fork, ...check, settle: () => { p.state = syncOut(s); bound(p) } }
}

/** Loads a whole-document chunk and validates every object in it; null when it cannot stand alone (use the normal path). */
export function loadWholeDocument (chunk: Uint8Array, actor: string, l: Lineage): { ok: true, core: Core } | Rejected | null {
  let core: Core
  try {
    core = loadCore(chunk, actor)
  } catch {
    return null
  }
  if (core.getMissingDeps(l.heads).length > 0) {
    core.free()
    return null
  }
  const problem = checkWhole(core, l)
  if (problem != null) {
    core.free()
    return { ok: false, reason: 'schema', detail: problem }
  }
  return { ok: true, core }
}
