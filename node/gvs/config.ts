// GVS settings, from the agent's config file (`"gvs": {"repairRate": "50M", ...}`) and,
// over those, the environment (an operator tuning one node, the e2e tests):
//   repairRate    VGRID_GVS_REPAIR_RATE     repair copy cap, bytes/s or a size per second ("50M")
//   repairDelay   VGRID_GVS_REPAIR_DELAY    wait after a membership change before repairing ("5s")
//   scrubInterval VGRID_GVS_SCRUB_INTERVAL  scheduled scrub period ("24h"; "0" never)
//   scrubRate     VGRID_GVS_SCRUB_RATE      scrub read cap, like the repair rate
//   retireQuiet   VGRID_GVS_RETIRE_QUIET    how long a surplus copy goes unused before repair frees it ("30s")
//   localCache    VGRID_GVS_LOCAL_CACHE     bytes this node may cache of its VMs' disks ("8G";
//                                           "0" none; default 8 GiB, at most a tenth of the data dir's free space)
// A bad value is an error naming the key or variable, never a silent default.
import { parseSize } from '../resources.ts'
import { durationMs, MAX_TIMER_MS } from '../durations.ts'

export interface GvsTuning {
  repairBytesPerSecond?: number
  repairDelayMs?: number
  scrubIntervalMs?: number
  scrubBytesPerSecond?: number
  retireQuietMs?: number
  localCacheBytes?: number
}

/** `maxMs`: for a delay a timer waits for in one piece (a longer one would fire after 1 ms) */
function duration (name: string, v: string, zeroOk: boolean, maxMs = Infinity): number {
  const n = durationMs(v)
  if (n == null) throw new Error(`${name}="${v}" is not a duration (use e.g. 500ms, 5s, 10m, 24h)`)
  if (n === 0 && !zeroOk) throw new Error(`${name} must be greater than zero`)
  if (n > maxMs) throw new Error(`${name}="${v}" is longer than ${Math.floor(maxMs / 3_600_000)}h`)
  return n
}

function rate (name: string, v: string): number {
  let n: number
  try { n = parseSize(v.replace(/\/s$/, '')) } catch (err) { throw new Error(`${name}: ${(err as Error).message}`) }
  if (!(n > 0)) throw new Error(`${name} must be greater than zero`)
  return n
}

function size (name: string, v: string): number {
  let n: number
  try { n = parseSize(v) } catch (err) { throw new Error(`${name}: ${(err as Error).message}`) }
  if (!(n >= 0)) throw new Error(`${name} must not be negative`)
  return n
}

/** Settings by name (`names` say how to call each in an error), as text; absent ones are left out. */
type Key = 'repairRate' | 'repairDelay' | 'scrubInterval' | 'scrubRate' | 'retireQuiet' | 'localCache'

function tuning (get: (k: Key) => string | undefined, names: Record<Key, string>): GvsTuning {
  const out: GvsTuning = {}
  let v: string | undefined
  if ((v = get('repairRate')) != null) out.repairBytesPerSecond = rate(names.repairRate, v)
  if ((v = get('repairDelay')) != null) out.repairDelayMs = duration(names.repairDelay, v, true, MAX_TIMER_MS)
  if ((v = get('scrubInterval')) != null) out.scrubIntervalMs = duration(names.scrubInterval, v, true)
  if ((v = get('scrubRate')) != null) out.scrubBytesPerSecond = rate(names.scrubRate, v)
  if ((v = get('retireQuiet')) != null) out.retireQuietMs = duration(names.retireQuiet, v, true)
  if ((v = get('localCache')) != null) out.localCacheBytes = size(names.localCache, v)
  return out
}

const ENV = { repairRate: 'VGRID_GVS_REPAIR_RATE', repairDelay: 'VGRID_GVS_REPAIR_DELAY', scrubInterval: 'VGRID_GVS_SCRUB_INTERVAL', scrubRate: 'VGRID_GVS_SCRUB_RATE', retireQuiet: 'VGRID_GVS_RETIRE_QUIET', localCache: 'VGRID_GVS_LOCAL_CACHE' } as const

export function tuningFromEnv (env: Record<string, string | undefined>): GvsTuning {
  return tuning(k => env[ENV[k]] != null && env[ENV[k]] !== '' ? env[ENV[k]] : undefined, ENV)
}

/** The config file's `gvs` object (its shape is checked by the config schema); numbers are bytes/s or ms. */
export function tuningFromConfig (gvs: Partial<Record<Key, string | number>>): GvsTuning {
  return tuning(k => gvs[k] == null ? undefined : String(gvs[k]), { repairRate: 'gvs.repairRate', repairDelay: 'gvs.repairDelay', scrubInterval: 'gvs.scrubInterval', scrubRate: 'gvs.scrubRate', retireQuiet: 'gvs.retireQuiet', localCache: 'gvs.localCache' })
}
