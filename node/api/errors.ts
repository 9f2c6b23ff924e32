// The API's one error shape, {"error":{"code","message"}} with a 4xx/5xx status, and
// the one place where errors thrown by services become HTTP answers. Routes throw
// domain errors (node/errors.ts, crdt's); none invents its own mapping.
import { ValidationError, NotFoundError, ConflictError, UnavailableError } from '../errors.ts'
import { InvalidObjectError, NotFoundError as DocNotFoundError, SchemaNewerError } from '../../crdt/index.ts'
import type { ErrorBody } from './types.ts'

export type { ErrorBody } from './types.ts'

export class ApiError extends Error {
  readonly status: number
  readonly code: string
  constructor (status: number, code: string, message: string) {
    super(message)
    this.status = status
    // the API's codes are snake_case; a service's own (the volume store's `in-use`, which
    // its replica protocol carries as is) is given in the API's spelling
    this.code = code.replace(/-/g, '_')
  }
}

export const errorBody = (code: string, message: string): ErrorBody => ({ error: { code, message } })

/** Fastify's own 4xx codes that deserve a name of their own */
const FRAMEWORK_CODES: Record<string, string> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'bad_request',
  FST_ERR_CTP_INVALID_JSON_BODY: 'bad_request',
  FST_ERR_REQUEST_TIMEOUT: 'request_timeout'
}

/** what those say in the API's words: what is wrong and what to send instead (fastify's own: "Request body is too large") */
const FRAMEWORK_MESSAGES: Record<string, (message: string, contentType?: string) => string> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: (_m, type) => `the request body's content type${type != null ? ` (${type.slice(0, 100)})` : ''} is not accepted: send JSON, with Content-Type: application/json`,
  FST_ERR_CTP_BODY_TOO_LARGE: () => `the request body is over the API's limit of ${API_BODY_LIMIT / 1024 / 1024} MiB`
}

/** the largest request body the API reads (bytes) */
export const API_BODY_LIMIT = 1024 * 1024

/** An error thrown while answering a request, as the response it becomes (`contentType`: the request's, for a 415). */
export function toApiError (err: unknown, contentType?: string): ApiError {
  if (err instanceof ApiError) return err
  if (err instanceof ValidationError) return new ApiError(400, err.code, err.message)
  if (err instanceof InvalidObjectError) return new ApiError(400, 'invalid', err.message)
  if (err instanceof NotFoundError) return new ApiError(404, err.code, err.message)
  if (err instanceof DocNotFoundError) return new ApiError(404, 'not_found', err.message)
  if (err instanceof SchemaNewerError) return new ApiError(409, 'schema_newer', err.message)
  if (err instanceof ConflictError) return new ApiError(409, err.code, err.message)
  if (err instanceof UnavailableError) return new ApiError(503, err.code, err.message)
  const e = err as { validation?: unknown, statusCode?: number, code?: string, message?: string }
  const message = e?.message ?? String(err)
  // an operating-system error (ENOSPC, EIO, ...) under a request: the agent cannot do it now
  if (typeof e?.code === 'string' && /^E[A-Z0-9]+$/.test(e.code) && e.statusCode == null) return new ApiError(503, 'unavailable', `could not be done: ${message}`)
  // request schema failures: said in the API's words (fastify's: "params/id must NOT
  // have fewer than 1 characters", which a tester read as jargon)
  if (e?.validation != null) return new ApiError(400, 'bad_request', validationMessage(e as { validation: unknown, validationContext?: string }) ?? message)
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new ApiError(e.statusCode, FRAMEWORK_CODES[e.code ?? ''] ?? 'bad_request', FRAMEWORK_MESSAGES[e.code ?? '']?.(message, contentType) ?? message)
  }
  return new ApiError(500, 'internal', message)
}

interface AjvIssue { instancePath?: string, keyword?: string, params?: Record<string, unknown>, message?: string }

const WHERE: Record<string, string> = { params: 'in the path', querystring: 'query parameter', headers: 'header' }

/**
 * A request schema failure (fastify's `validation`: ajv's first issue, and where:
 * body, params, querystring) as the API says it: the field named as a client sends
 * it, what it must be in plain words; null if there is no issue to read. Pure.
 */
export function validationMessage (e: { validation: unknown, validationContext?: string }): string | null {
  const issue = (Array.isArray(e.validation) ? e.validation[0] : undefined) as AjvIssue | undefined
  if (issue == null || typeof issue !== 'object') return null
  const ctx = e.validationContext ?? 'body'
  const path = (issue.instancePath ?? '').split('/').filter(p => p !== '').map(p => p.replace(/~1/g, '/').replace(/~0/g, '~')).join('.')
  const p = issue.params ?? {}
  const field = (name: string): string => ctx === 'body' ? name : ctx === 'querystring' ? `query parameter ${name}` : ctx === 'params' ? `${name} (in the path)` : `${name} (${WHERE[ctx] ?? ctx})`
  const subject = path === '' ? (ctx === 'body' ? 'the request body' : ctx === 'querystring' ? 'the query' : ctx === 'params' ? 'the path' : ctx) : field(path)
  const within = path === '' ? '' : `${path}.`
  const n = (k: string): number => Number(p[k])
  switch (issue.keyword) {
    case 'required': return `${ctx === 'body' ? '' : `${WHERE[ctx] ?? ctx} `}${within}${String(p.missingProperty)} is missing`.trimStart()
    case 'additionalProperties': return `unknown field ${JSON.stringify(`${within}${String(p.additionalProperty)}`)}${ctx === 'body' ? '' : ` (${WHERE[ctx] ?? ctx})`}`
    case 'minLength': return n('limit') === 1 ? `${subject} must not be empty` : `${subject} must have at least ${n('limit')} characters`
    case 'maxLength': return `${subject} must have at most ${n('limit')} characters`
    case 'minItems': return `${subject} must have at least ${n('limit')} item${n('limit') === 1 ? '' : 's'}`
    case 'maxItems': return `${subject} must have at most ${n('limit')} items`
    case 'enum': return Array.isArray(p.allowedValues) ? `${subject} must be one of: ${p.allowedValues.map(v => JSON.stringify(v)).join(', ')}` : `${subject} ${issue.message ?? 'is not allowed'}`
    case 'type': return `${subject} must be ${/^[aeiou]/.test(String(p.type)) ? 'an' : 'a'} ${String(p.type)}`
    default: return `${subject} ${issue.message ?? 'is not valid'}`
  }
}
