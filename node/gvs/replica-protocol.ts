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
import { Type, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { parseJsonMessage } from '../../protocol/json-message.ts'
import { GvsError, type GvsErrorCode } from './errors.ts'

export const REPLICA_PROTOCOL = '/vgrid/gvs/replica/2.0.0'
export const REPLICA_PROTOCOL_V1 = '/vgrid/gvs/replica/1.0.0'
/** headers are small; data frames carry at most one object */
export const MAX_HEADER = 4096

const Vol = Type.String({ minLength: 1, maxLength: 160 })
const U = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })
/** the frozen layers under `volume`, top first (snapshots and clones; layers.ts) */
const Under = Type.Optional(Type.Array(Vol, { maxItems: 256 }))
const VersionT = Type.Object({ epoch: U, seq: U })

export const ReplicaRequestSchema = Type.Union([
  Type.Object({ op: Type.Literal('write'), volume: Vol, index: U, offset: U, epoch: U, seq: Type.Optional(U), fua: Type.Boolean(), under: Under }),
  Type.Object({ op: Type.Literal('zero'), volume: Vol, index: U, offset: U, length: U, epoch: U, seq: Type.Optional(U), fua: Type.Boolean(), under: Under }),
  Type.Object({ op: Type.Literal('read'), volume: Vol, index: U, offset: U, length: U, under: Under }),
  Type.Object({ op: Type.Literal('get'), volume: Vol, index: U }),
  Type.Object({ op: Type.Literal('put'), volume: Vol, index: U, epoch: U, version: Type.Optional(VersionT), replace: Type.Optional(Type.Boolean()) }),
  Type.Object({ op: Type.Literal('verify'), volume: Vol, index: U }),
  Type.Object({ op: Type.Literal('list'), volume: Vol }),
  Type.Object({ op: Type.Literal('stat'), volume: Vol, index: U, under: Under }),
  Type.Object({ op: Type.Literal('remove'), volume: Vol, index: U }),
  Type.Object({ op: Type.Literal('fence'), volume: Vol, epoch: U }),
  Type.Object({ op: Type.Literal('flush') })
])
export type ReplicaRequest = Static<typeof ReplicaRequestSchema>

const Code = Type.Union(['stale-epoch', 'damaged', 'invalid', 'no-space', 'unavailable', 'io'].map(c => Type.Literal(c)))
export const ReplicaReplySchema = Type.Union([
  Type.Object({
    ok: Type.Literal(true),
    present: Type.Optional(Type.Boolean()),
    epoch: Type.Optional(U),
    version: Type.Optional(VersionT),
    bad: Type.Optional(Type.Array(U, { maxItems: 4096 })),
    indexes: Type.Optional(Type.Array(U, { maxItems: 1_000_000 })),
    versions: Type.Optional(Type.Array(Type.Tuple([U, U]), { maxItems: 1_000_000 }))
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

export function replyError (r: ReplicaReply & { ok: false }, peer: string): GvsError {
  return new GvsError(r.code as GvsErrorCode, `replica ${peer}: ${r.message}`)
}
