// Short names derived from longer ones (a VM's interfaces, its groups), the same on
// every run and in every process that derives them (the agent, the watchdog).
import { createHash } from 'node:crypto'

/** the first 8 hex digits of the SHA-256 of `id` */
export function shortHash (id: string): string {
  return createHash('sha256').update(id).digest('hex').slice(0, 8)
}
