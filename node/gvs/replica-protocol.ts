// The replication protocol's messages. Version 2: long-lived streams, each carrying
// many requests at once as frames tagged with a request id (replica-frames.ts); a
// frame holds a JSON header and, for 'write' and 'put' requests and for the answers to
// 'read' and 'get', the data. Version 1 (still answered, for agents not yet upgraded):
// one stream per request, a length-prefixed JSON header, then the data as a second
// length-prefixed frame, and the answer likewise. Headers are checked against a schema
// before anything acts on them: a malformed request is answered with 'invalid'.
// Object versions (versions.ts) ride along as optional fields, so agents without them
// still understand the rest: a write's or zero's `seq` (its version is (epoch, seq)),
// a put's `version`, and the `version` of a stat's or get's answer, the `versions` of a
// list's (in the order of its `indexes`). Missing, a version counts as NO_VERSION.
// `mark` and `retire` (repair freeing a copy on a node that is no longer its holder)
// are new ops, not a flag on `remove`: an agent of an earlier release answers them
// 'invalid' and keeps the copy, where it would take a flag it does not know as an
// unconditional remove.
// A list asked with `from` (and maybe `limit`) is answered in pages whose entries ride
// in the frame's data (LIST_ENTRY bytes each), `count` of them, with `more` the `from`
// of the next page: a node may hold any number of a volume's objects, and a header is
// at most 64 KiB. A list asked without (agents of earlier releases) gets the whole list
// in the header as before, or a clear error when it would not fit in one.
import { Type, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { parseJsonMessage } from '../../protocol/json-message.ts'
import { GvsError, type GvsErrorCode } from './errors.ts'
import { MAX_FRAME_HEADER } from './replica-frames.ts'
import { NO_VERSION, type Version } from './versions.ts'

export const REPLICA_PROTOCOL = '/vgrid/gvs/replica/2.0.0'
export const REPLICA_PROTOCOL_V1 = '/vgrid/gvs/replica/1.0.0'
/** headers are small; data frames carry at most one object */
export const MAX_HEADER = 4096

const Vol = Type.String({ minLength: 1, maxLength: 160 })
const U = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })
/**
 * An object's index: 32 bits, as the store names its files (8 hex digits) and a list
 * page carries them (u32). A larger one from a peer would be stored where no list finds it.
 */
export const MAX_INDEX = 0xffffffff
const Index = Type.Integer({ minimum: 0, maximum: MAX_INDEX })
/** the frozen layers under `volume`, top first (snapshots and clones; layers.ts) */
const Under = Type.Optional(Type.Array(Vol, { maxItems: 256 }))
const VersionT = Type.Object({ epoch: U, seq: U })

export const ReplicaRequestSchema = Type.Union([
  // followsFreeze: the writer takes a `frozen` refusal (frozen-layers.ts) and goes on in
  // the new top; a writer of an earlier release sends none, and is not refused so (it
  // would take the unknown code for an I/O error)
  Type.Object({ op: Type.Literal('write'), volume: Vol, index: Index, offset: U, epoch: U, seq: Type.Optional(U), fua: Type.Boolean(), under: Under, followsFreeze: Type.Optional(Type.Literal(true)) }),
  Type.Object({ op: Type.Literal('zero'), volume: Vol, index: Index, offset: U, length: U, epoch: U, seq: Type.Optional(U), fua: Type.Boolean(), under: Under, followsFreeze: Type.Optional(Type.Literal(true)) }),
  Type.Object({ op: Type.Literal('read'), volume: Vol, index: Index, offset: U, length: U, under: Under }),
  // digest: the answer carries the digest of the copy's checksums (as stat's)
  Type.Object({ op: Type.Literal('get'), volume: Vol, index: Index, digest: Type.Optional(Type.Boolean()) }),
  // ifDigest: replaces only a copy of the same version whose digest is still this one
  // (sent only to nodes that answered a digest: an earlier release ignores the field)
  Type.Object({ op: Type.Literal('put'), volume: Vol, index: Index, epoch: U, version: Type.Optional(VersionT), replace: Type.Optional(Type.Boolean()), ifDigest: Type.Optional(Type.String({ pattern: '^[0-9a-f]{8}$' })) }),
  Type.Object({ op: Type.Literal('verify'), volume: Vol, index: Index }),
  Type.Object({ op: Type.Literal('list'), volume: Vol, from: Type.Optional(U), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })) }),
  // probe: a repair's look, which is not a client's use of the copy (retire below)
  // digest: the answer carries a digest of the copy's block checksums (a writer's first
  // settle compares copies of one version: versions.ts unifyPlan); an agent of an earlier
  // release answers without one
  Type.Object({ op: Type.Literal('stat'), volume: Vol, index: Index, under: Under, probe: Type.Optional(Type.Boolean()), digest: Type.Optional(Type.Boolean()) }),
  Type.Object({ op: Type.Literal('remove'), volume: Vol, index: Index }),
  // a surplus copy freed by repair (object-uses.ts): `mark` hands out this node's mark
  // of now; `retire` frees the copy only while it is still at `version` and no client
  // used it since `since` (a mark) nor for `quietMs`; answered present: true when kept
  Type.Object({ op: Type.Literal('mark') }),
  Type.Object({ op: Type.Literal('retire'), volume: Vol, index: Index, version: VersionT, since: Type.String({ minLength: 1, maxLength: 64 }), quietMs: U }),
  // a deleted snapshot's layer `from` folded into the frozen layer `volume` above it
  // (layer-reclaim.ts): the object copied up here only where `volume` lacks it, and
  // `from`'s writer epoch taught to `volume`; without index, the epoch alone. Answered
  // present: whether `volume` has the object now
  Type.Object({ op: Type.Literal('merge'), volume: Vol, from: Vol, index: Type.Optional(Index) }),
  Type.Object({ op: Type.Literal('fence'), volume: Vol, epoch: U }),
  // a snapshot froze these layers (its volumes' former tops): writes to them are refused
  // from the answer on (frozen-layers.ts). An agent of an earlier release refuses the
  // request as invalid, and its snapshot makers send none
  Type.Object({ op: Type.Literal('freeze'), layers: Type.Array(Vol, { minItems: 1, maxItems: 256 }) }),
  Type.Object({ op: Type.Literal('flush'), volume: Type.Optional(Vol) })
])
export type ReplicaRequest = Static<typeof ReplicaRequestSchema>

const Code = Type.Union(['stale-epoch', 'frozen', 'damaged', 'invalid', 'no-space', 'unavailable', 'io'].map(c => Type.Literal(c)))
export const ReplicaReplySchema = Type.Union([
  Type.Object({
    ok: Type.Literal(true),
    present: Type.Optional(Type.Boolean()),
    epoch: Type.Optional(U),
    version: Type.Optional(VersionT),
    /** a stat's or get's, when asked: the CRC-32 of the copy's block checksums, 8 hex digits */
    digest: Type.Optional(Type.String({ pattern: '^[0-9a-f]{8}$' })),
    bad: Type.Optional(Type.Array(U, { maxItems: 4096 })),
    indexes: Type.Optional(Type.Array(U, { maxItems: 1_000_000 })),
    versions: Type.Optional(Type.Array(Type.Tuple([U, U]), { maxItems: 1_000_000 })),
    /** a list page: entries in the data */
    count: Type.Optional(U),
    /** a list page: there are more, from this index on */
    more: Type.Optional(U),
    /** the answer to `mark` */
    mark: Type.Optional(Type.String({ maxLength: 64 }))
  }),
  Type.Object({ ok: Type.Literal(false), code: Code, message: Type.String({ maxLength: 2048 }) })
])
export type ReplicaReply = Static<typeof ReplicaReplySchema>

const reqCheck = TypeCompiler.Compile(ReplicaRequestSchema)
const replyCheck = TypeCompiler.Compile(ReplicaReplySchema)

export const encode = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v))

export function decodeRequest (data: Uint8Array): ReplicaRequest {
  const p = parseJsonMessage(data, MAX_HEADER, reqCheck)
  if (!p.ok) throw new GvsError('invalid', `replica request rejected (${p.reason}): ${p.detail}`)
  return p.value
}

export function decodeReply (data: Uint8Array): ReplicaReply {
  const p = parseJsonMessage(data, 1 << 24, replyCheck)
  if (!p.ok) throw new GvsError('io', `replica reply rejected (${p.reason}): ${p.detail}`)
  return p.value
}

export function errorReply (err: unknown): ReplicaReply {
  if (err instanceof GvsError) return { ok: false, code: err.code, message: err.message.slice(0, 2048) }
  return { ok: false, code: 'io', message: String((err as Error)?.message ?? err).slice(0, 2048) }
}

/** a replica's refusal as an error; `unavailable` there is a moment's (a copy it freed: settle again), so worth another try */
export function replyError (r: ReplicaReply & { ok: false }, peer: string): GvsError {
  return new GvsError(r.code as GvsErrorCode, `replica ${peer}: ${r.message}`, { transient: r.code === 'unavailable' })
}

/** one object a node holds, as a list reports it */
export interface Listed { index: number, version: Version }

/** bytes of one entry of a list page's data: u32 index, f64 epoch, f64 seq */
export const LIST_ENTRY = 20

/** entries of a list page: its data is at most an object's size, which every frame reader takes */
export const listPage = (objectSize: number): number => Math.max(1, Math.floor(objectSize / LIST_ENTRY))

export function encodeList (entries: readonly Listed[]): Uint8Array {
  const out = new Uint8Array(entries.length * LIST_ENTRY)
  const dv = new DataView(out.buffer)
  entries.forEach((e, k) => {
    dv.setUint32(k * LIST_ENTRY, e.index)
    dv.setFloat64(k * LIST_ENTRY + 4, e.version.epoch)
    dv.setFloat64(k * LIST_ENTRY + 12, e.version.seq)
  })
  return out
}

export function decodeList (data: Uint8Array | null, count: number): Listed[] {
  const bytes = data?.length ?? 0
  if (bytes !== count * LIST_ENTRY) throw new GvsError('io', `replica list page of ${count} entries came with ${bytes} bytes, not ${count * LIST_ENTRY}`)
  const out: Listed[] = []
  if (data == null) return out
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength)
  const whole = (x: number): boolean => Number.isSafeInteger(x) && x >= 0
  for (let at = 0; at < bytes; at += LIST_ENTRY) {
    const index = dv.getUint32(at)
    const epoch = dv.getFloat64(at + 4)
    const seq = dv.getFloat64(at + 12)
    if (!whole(epoch) || !whole(seq)) throw new GvsError('io', `replica list page: object ${index} has version ${epoch}.${seq}`)
    out.push({ index, version: { epoch, seq } })
  }
  return out
}

/** what a list answer of an agent of an earlier release says: the whole list, in its header */
export const listedOf = (reply: ReplicaReply & { ok: true }): Listed[] => (reply.indexes ?? []).map((index, k) => {
  const v = reply.versions?.[k]
  return { index, version: v == null ? NO_VERSION : { epoch: v[0], seq: v[1] } }
})

/**
 * The answer to a list request, given what the store holds of the volume (by index,
 * ascending): a page when asked with `from` or `limit`, else (an agent of an earlier
 * release asking) the whole list in the header if it fits in one frame, else an error.
 */
export function answerList (held: readonly Listed[], req: { volume: string, from?: number, limit?: number }, objectSize: number): { reply: ReplicaReply & { ok: true }, data: Uint8Array | null } {
  if (req.from == null && req.limit == null) {
    const reply = { ok: true as const, indexes: held.map(o => o.index), versions: held.map(o => [o.version.epoch, o.version.seq] as [number, number]) }
    const bytes = encode(reply).length
    if (bytes > MAX_FRAME_HEADER) throw new GvsError('invalid', `"${req.volume}" has ${held.length} objects here: a list of them without pages (${bytes} bytes) does not fit in a frame's ${MAX_FRAME_HEADER}; ask with {from, limit} (as agents with paged lists do)`)
    return { reply, data: null }
  }
  const n = Math.min(req.limit ?? Infinity, listPage(objectSize))
  const from = req.from ?? 0
  const rest = held.filter(o => o.index >= from).sort((a, b) => a.index - b.index)
  const page = rest.slice(0, n)
  const more = rest.length > n ? page[n - 1]!.index + 1 : undefined
  return { reply: { ok: true, count: page.length, ...(more != null ? { more } : {}) }, data: page.length > 0 ? encodeList(page) : null }
}
