// A suspicion: "I (the signer) have lost contact with `target` at this version",
// or, with `kind: 'dead'`, "my suspicion of it ran out unrefuted". Gossiped so that
// every node starts the same countdown and ends it together; the target refutes
// either by publishing a newer advert.
// Fields a newer release adds are ignored (a suspicion is never relayed by this code:
// gossipsub forwards the bytes as received); one is rejected only when a field this
// agent knows is missing or out of its schema.
import { Type, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { parseJsonMessage, type Rejection } from './json-message.ts'

const Count = Type.Number({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })

export const SuspicionSchema = Type.Object({
  v: Type.Literal(1),
  cluster: Type.String({ minLength: 1, maxLength: 64 }),
  from: Type.String({ minLength: 1, maxLength: 128 }),
  target: Type.String({ minLength: 1, maxLength: 128 }),
  incarnation: Count,
  seq: Count,
  /** absent in a plain suspicion */
  kind: Type.Optional(Type.Union([Type.Literal('suspect'), Type.Literal('dead')]))
}, { additionalProperties: true })

export type Suspicion = Static<typeof SuspicionSchema>

const check = TypeCompiler.Compile(SuspicionSchema)
const MAX_BYTES = 1024

export function encodeSuspicion (s: Suspicion): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(s))
}

export function decodeSuspicion (data: Uint8Array, signer: string, clusterId: string):
  { ok: true, suspicion: Suspicion } | { ok: false, reason: Rejection, detail: string } {
  const res = parseJsonMessage(data, MAX_BYTES, check)
  if (!res.ok) return res
  const value = res.value
  if (value.cluster !== clusterId) return { ok: false, reason: 'wrong-cluster', detail: value.cluster }
  if (value.from !== signer) return { ok: false, reason: 'forged', detail: `${signer} spoke for ${value.from}` }
  return { ok: true, suspicion: value }
}
