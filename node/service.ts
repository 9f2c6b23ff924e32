// What the agent is made of: services. Each is built from one `components` object
// holding only what it needs (a narrow interface per dependency, as js-libp2p builds
// its components), started in the order of the agent's list and stopped in reverse.
// No service holds the agent; services reach each other only through the parts they
// were given.
import type { FastifyInstance } from 'fastify'
import type { Logger } from './log.ts'

export interface Service {
  /** short, lowercase: used in logs and errors ("state", "membership", "api") */
  readonly name: string
  start: () => Promise<void>
  /** `graceful: false` stops as a crash would, without telling peers (tests, benchmarks) */
  stop: (opts: { graceful: boolean }) => Promise<void>
  /** the HTTP routes this service brings; registered before the API listens */
  routes?: (app: FastifyInstance) => void
}

/** Wall time, injectable so decisions can be tested with a fake clock. */
export interface Clock { now: () => number }
export const systemClock: Clock = { now: () => Date.now() }

export class ServiceStartError extends Error {
  override name = 'ServiceStartError'
  readonly service: string
  constructor (service: string, cause: Error) {
    super(`${service}: ${cause.message}`, { cause })
    this.service = service
  }
}

/**
 * Starts `services` in order. If one fails, those that did start are stopped in
 * reverse and the error (naming the service) is thrown: a failed start leaves
 * nothing running.
 */
export async function startAll (services: readonly Service[], log: Logger): Promise<void> {
  const started: Service[] = []
  for (const s of services) {
    try {
      await s.start()
      started.push(s)
    } catch (err) {
      await stopAll(started, { graceful: false }, log)
      throw err instanceof ServiceStartError ? err : new ServiceStartError(s.name, err as Error)
    }
  }
}

/**
 * Stops `services` in reverse order. Every service gets its stop even when an
 * earlier one fails; the failures are logged and the first is thrown at the end, so
 * a stop that could not save something says so.
 */
export async function stopAll (services: readonly Service[], opts: { graceful: boolean }, log: Logger): Promise<void> {
  let first: Error | undefined
  for (const s of [...services].reverse()) {
    try {
      await s.stop(opts)
    } catch (err) {
      log.error(`stopping ${s.name} failed`, { error: (err as Error).message })
      first ??= new Error(`${s.name}: ${(err as Error).message}`, { cause: err })
    }
  }
  if (first != null) throw first
}
