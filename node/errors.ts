// Errors a service throws when a request cannot be done, named by what went wrong
// rather than by HTTP status: node/api/errors.ts maps them to responses in one place.

/** The request is wrong: `field` names what (e.g. "spec.memoryBytes", "path"); the message names it too. */
export class ValidationError extends Error {
  override name = 'ValidationError'
  readonly field: string
  readonly code: string
  constructor (field: string, message: string, code = 'invalid') {
    super(message)
    this.field = field
    this.code = code
  }
}

/** a name or id a request gave, as an error quotes it: one far past any real one is cut (bb41: 8,000 characters echoed back) */
export function quoteGiven (given: string, max = 256): string {
  return JSON.stringify(given.length <= max ? given : `${given.slice(0, 40)}…`) + (given.length <= max ? '' : ` (${given.length} characters)`)
}

/** What the request names does not exist; `code` says more where a client can act on it (a removed VM still stopping). */
export class NotFoundError extends Error {
  override name = 'NotFoundError'
  readonly code: string
  constructor (message: string, code = 'not_found') {
    super(message)
    this.code = code
  }
}

/** The request contradicts what exists (a name in use, a volume still attached, ...). */
export class ConflictError extends Error {
  override name = 'ConflictError'
  readonly code: string
  constructor (message: string, code = 'conflict') {
    super(message)
    this.code = code
  }
}

/** The agent cannot do it now (disk trouble, no majority, ...); `code` says why. */
export class UnavailableError extends Error {
  override name = 'UnavailableError'
  readonly code: string
  constructor (message: string, code = 'unavailable') {
    super(message)
    this.code = code
  }
}

/**
 * A request body's fields, checked against those its route knows: a misspelt or
 * unsupported one ("replica", "replicas" in a resize) is a 400 naming it, never a
 * silent default the caller takes for what it asked.
 */
export function onlyFields (body: Record<string, unknown>, known: readonly string[]): void {
  const unknown = Object.keys(body).find(k => !known.includes(k))
  if (unknown !== undefined) throw new ValidationError(unknown, `unknown field "${unknown}" (this request takes ${known.join(', ')})`)
}

/** the query parameters a request takes: an unknown one is refused, as an unknown body field is (a DELETE ?bogus=1 went ahead, the parameter ignored) */
export function onlyQuery (query: unknown, known: readonly string[]): void {
  const unknown = Object.keys(query ?? {}).find(k => !known.includes(k))
  if (unknown !== undefined) throw new ValidationError(unknown, `unknown query parameter "${unknown}" (this request takes ${known.length === 0 ? 'none' : known.join(', ')})`)
}

/** a boolean query parameter (`?force=true`): absent is false; anything but one "true" or "false" is refused naming it */
export function booleanQuery (query: unknown, name: string): boolean {
  const v = (query as Record<string, unknown> | null | undefined)?.[name]
  if (v === undefined) return false
  if (v === 'true' || v === 'false') return v === 'true'
  throw new ValidationError(name, `${name} must be true or false, given once, not ${JSON.stringify(v)}`)
}

/** a whole number of 0 or more in the query string (an offset, a time in ms), once; undefined when not given */
export function countQuery (query: unknown, name: string): number | undefined {
  const v = (query as Record<string, unknown> | null | undefined)?.[name]
  if (v === undefined) return undefined
  const n = typeof v === 'string' && /^\d{1,16}$/.test(v) ? Number(v) : NaN
  if (!Number.isSafeInteger(n)) throw new ValidationError(name, `${name} must be a whole number of 0 or more, given once, not ${JSON.stringify(v)}`)
  return n
}

/** a request body that must be a JSON object */
export function bodyObject (b: unknown): Record<string, unknown> {
  if (b == null || typeof b !== 'object' || Array.isArray(b)) throw new ValidationError('body', 'the request body must be a JSON object')
  return b as Record<string, unknown>
}

/** a body that may be left out: none reads as {} */
export const optionalBody = (b: unknown): Record<string, unknown> => b == null || b === '' ? {} : bodyObject(b)

/** a true/false field of a body, `dflt` when absent */
export function flag (b: Record<string, unknown>, k: string, dflt: boolean): boolean {
  if (b[k] == null) return dflt
  if (typeof b[k] !== 'boolean') throw new ValidationError(k, `${k} must be true or false`)
  return b[k]
}

/** a request that takes no body: none, an empty one, or {} */
export function noBody (body: unknown): void {
  if (body == null || body === '') return
  if (typeof body === 'object' && !Array.isArray(body) && Object.keys(body).length === 0) return
  throw new ValidationError('body', 'this request takes no body')
}
