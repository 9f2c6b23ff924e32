// The one way a JSON message off the wire becomes a typed value: size cap, strict
// UTF-8, JSON, then the compiled schema; each failure named by a rejection reason.
import type { TypeCheck } from '@sinclair/typebox/compiler'
import type { TSchema, Static } from '@sinclair/typebox'

export type Rejection = 'oversized' | 'malformed' | 'schema' | 'wrong-cluster' | 'forged' | 'bad-signature'

export type Parsed<T> = { ok: true, value: T } | { ok: false, reason: Rejection, detail: string }

export function parseJsonMessage<S extends TSchema> (data: Uint8Array, maxBytes: number, check: TypeCheck<S>): Parsed<Static<S>> {
  if (data.byteLength > maxBytes) return { ok: false, reason: 'oversized', detail: `${data.byteLength} bytes` }
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data))
  } catch (err) {
    return { ok: false, reason: 'malformed', detail: (err as Error).message }
  }
  if (!check.Check(value)) {
    const e = check.Errors(value).First()
    return { ok: false, reason: 'schema', detail: e == null ? 'invalid' : `${e.path || '/'}: ${e.message}` }
  }
  return { ok: true, value }
}
