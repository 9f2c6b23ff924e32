// GVS settings from the environment, for agents started as processes (the e2e tests,
// an operator tuning one node) until the agent's config file carries them:
//   VGRID_GVS_REPAIR_RATE     repair copy cap, bytes/s or a size per second ("50M")
//   VGRID_GVS_REPAIR_DELAY    wait after a membership change before repairing ("5s")
//   VGRID_GVS_SCRUB_INTERVAL  scheduled scrub period ("24h"; "0" never)
//   VGRID_GVS_SCRUB_RATE      scrub read cap, like the repair rate
// A bad value is an error naming the variable, never a silent default.
import { parseSize } from '../resources.ts'

export interface GvsTuning {
  repairBytesPerSecond?: number
  repairDelayMs?: number
  scrubIntervalMs?: number
  scrubBytesPerSecond?: number
}

const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/

function duration (name: string, v: string, zeroOk: boolean): number {
  const m = DURATION.exec(v)
  if (m == null) throw new Error(`${name}="${v}" is not a duration (use e.g. 500ms, 5s, 10m, 24h)`)
  const n = Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 'ms'] ?? 1)
  if (n === 0 && !zeroOk) throw new Error(`${name} must be greater than zero`)
  return n
}

function rate (name: string, v: string): number {
  let n: number
  try { n = parseSize(v.replace(/\/s$/, '')) } catch (err) { throw new Error(`${name}: ${(err as Error).message}`) }
  if (!(n > 0)) throw new Error(`${name} must be greater than zero`)
  return n
}

export function tuningFromEnv (env: Record<string, string | undefined>): GvsTuning {
  const out: GvsTuning = {}
  const get = (k: string): string | undefined => env[k] != null && env[k] !== '' ? env[k] : undefined
  let v: string | undefined
  if ((v = get('VGRID_GVS_REPAIR_RATE')) != null) out.repairBytesPerSecond = rate('VGRID_GVS_REPAIR_RATE', v)
  if ((v = get('VGRID_GVS_REPAIR_DELAY')) != null) out.repairDelayMs = duration('VGRID_GVS_REPAIR_DELAY', v, true)
  if ((v = get('VGRID_GVS_SCRUB_INTERVAL')) != null) out.scrubIntervalMs = duration('VGRID_GVS_SCRUB_INTERVAL', v, true)
  if ((v = get('VGRID_GVS_SCRUB_RATE')) != null) out.scrubBytesPerSecond = rate('VGRID_GVS_SCRUB_RATE', v)
  return out
}
