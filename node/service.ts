// What the agent is made of: services. Each is built from one `components` object
// holding only what it needs (a narrow interface per dependency, as js-libp2p builds
// its components), started in the order of the agent's list and stopped in reverse.
// No service holds the agent; services reach each other only through the parts they
// were given.
import type { FastifyInstance } from 'fastify'
import type { Logger } from './log.ts'
import { monoNow } from '../protocol/mono-clock.ts'

export interface Service {
  /** short, lowercase: used in logs and errors ("state", "membership", "api") */
  readonly name: string
  start: () => Promise<void>
  /**
   * `graceful: false` stops as a crash would, without telling peers (tests, benchmarks).
   * `leave: false` (a graceful stop for a restart, SIGTERM): peers are told, but the node
   * stays in the grid: its VMs run on under the watchdog for the next run to adopt
   * (absent: a graceful stop leaves)
   */
  stop: (opts: { graceful: boolean, leave?: boolean }) => Promise<void>
  /** the HTTP routes this service brings; registered before the API listens */
  routes?: (app: FastifyInstance) => void
}

/**
 * The agent's clock, injectable so decisions can be tested with a fake one. `now` is
 * for durations, deadlines and liveness: ms on the epoch scale that never step when
 * the wall clock does (protocol/mono-clock.ts), so an NTP step cannot fence a node,
 * let a takeover or a start come early, or delay them. `wall` is for stamps that
 * another node or a later run reads (crash records, the roll's joined): see wallNow.
 */
export interface Clock {
  now: () => number
  /** wall time (Date.now); a fake clock may leave it out and have `now` serve both */
  wall?: () => number
}
export const systemClock: Clock = { now: monoNow, wall: () => Date.now() }

/** The wall time of `clock`, for stamps other nodes or a later run compare with their own clocks. */
export const wallNow = (clock: Clock): number => clock.wall?.() ?? clock.now()

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
      await stopAll(started, { graceful: false }).catch((e: unknown) => { log.error('stopping what did start failed too', { error: (e as Error).message }) })
      throw err instanceof ServiceStartError ? err : new ServiceStartError(s.name, err as Error)
    }
  }
}

/**
 * Stops `services` in reverse order. Every service gets its stop even when an
 * earlier one fails; then one error naming each failed service is thrown (the caller
 * logs it once), so a stop that could not save something says so.
 */
export async function stopAll (services: readonly Service[], opts: { graceful: boolean, leave?: boolean }): Promise<void> {
  const failed: string[] = []
  let first: unknown
  for (const s of [...services].reverse()) {
    try {
      await s.stop(opts)
    } catch (err) {
      failed.push(`${s.name}: ${(err as Error).message}`)
      first ??= err
    }
  }
  if (failed.length > 0) throw new Error(failed.join('; '), { cause: first })
}
