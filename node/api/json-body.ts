// The API's JSON body parser, in place of Fastify's: the same JSON, with two more checks
// that name what is wrong. A body nested deeper than any request needs is refused
// before a route walks it (5,000 levels overflowed the stack of code that quotes a bad
// value: a 500); a `__proto__` key, or a `constructor` holding a `prototype`, is refused
// by its name (Fastify's parser refused them as "not valid JSON").
import { ApiError } from './errors.ts'

/** deeper than any request body of this API (a VM spec's constraints are 3) */
export const MAX_BODY_DEPTH = 32

export function parseJsonBody (text: string): unknown {
  if (text.trim() === '') throw new ApiError(400, 'bad_request', 'the body is empty, but its content-type says JSON: send a JSON value, or no content-type')
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch (err) {
    throw new ApiError(400, 'bad_request', `the body is not valid JSON: ${(err as Error).message}`)
  }
  checkShape(body)
  return body
}

/** walks the value without recursion (a deep one must not overflow the walk itself) */
function checkShape (body: unknown): void {
  const stack: Array<{ v: unknown, depth: number, path: string }> = [{ v: body, depth: 0, path: 'body' }]
  while (stack.length > 0) {
    const { v, depth, path } = stack.pop()!
    if (v == null || typeof v !== 'object') continue
    if (depth >= MAX_BODY_DEPTH) throw new ApiError(400, 'bad_request', `the body is nested more than ${MAX_BODY_DEPTH} levels deep (at ${path.length > 80 ? `${path.slice(0, 80)}…` : path}): no request of this API is`)
    if (Array.isArray(v)) {
      v.forEach((x, i) => { stack.push({ v: x, depth: depth + 1, path: `${path}[${i}]` }) })
      continue
    }
    for (const [k, x] of Object.entries(v)) {
      if (k === '__proto__' || (k === 'constructor' && x != null && typeof x === 'object' && Object.hasOwn(x, 'prototype'))) {
        throw new ApiError(400, 'bad_request', `${path}.${k}: the key "${k}" is refused in a request body`)
      }
      stack.push({ v: x, depth: depth + 1, path: `${path}.${k}` })
    }
  }
}
