// `vgrid vm wait` and the `--wait` of `vm create|start|stop|rm`: follow a VM until it is
// running, stopped or gone, or say why it never will be (bb49: scripts polled `vm show`
// and had to know which states are final). `waitVerdict` decides (pure); `waitForVm`
// polls the API.
import { CliError } from '../cli/client.ts'
import { escapeControls } from './control-chars.ts'
import { durationMs, MAX_TIMER_MS } from '../durations.ts'
import type { VmDetail } from './vms.ts'

export type WaitFor = 'running' | 'stopped' | 'gone'
export const WAIT_FORS: readonly WaitFor[] = ['running', 'stopped', 'gone']

/** what one look at the VM found: its row, no VM of the name, or a removed one whose run is still stopping */
export type VmSeen =
  | { kind: 'vm', name: string, state: string, desired: string, node: string | null, reason: string | null }
  | { kind: 'gone' }
  | { kind: 'stopping', message: string }

export type WaitVerdict =
  | { done: true, failed?: undefined }
  | { done: false, failed: { code: string, message: string } }
  | { done: false, failed?: undefined, now: string }

/**
 * Whether the wait is over (`done`), can no longer end as asked (`failed`: a state no
 * change of the grid's leads out of without a new request), or goes on (`now`: what it
 * is meanwhile). Pure.
 * - running: `failed` (a failed start, or the crash rule) and `stopped` while desired
 *   running (its command ended and its restart policy keeps it so) are final, as is a
 *   stop made meanwhile; pending, starting, paused and unknown pass.
 * - stopped: stopped or failed (nothing runs); a start made meanwhile ends the wait.
 * - gone: no VM of the name and no run of a removed one still stopping.
 */
export function waitVerdict (want: WaitFor, seen: VmSeen): WaitVerdict {
  if (seen.kind === 'gone') return want === 'gone' ? { done: true } : { done: false, failed: { code: 'not_found', message: 'it was removed' } }
  if (seen.kind === 'stopping') return want === 'gone' ? { done: false, now: seen.message } : { done: false, failed: { code: 'not_found', message: seen.message } }
  const now = `${seen.state}${seen.node != null ? ` on ${seen.node}` : ''}${seen.reason != null ? ` (${seen.reason})` : ''}`
  if (want === 'gone') return { done: false, now: `${now}; it is not removed (vgrid vm rm removes it)` }
  if (want === 'stopped') {
    if (seen.state === 'stopped' || seen.state === 'failed') return { done: true }
    if (seen.desired === 'running') return { done: false, failed: { code: 'desired_changed', message: `it is desired running (started meanwhile, or never stopped: vgrid vm stop stops it); now ${now}` } }
    return { done: false, now }
  }
  if (seen.state === 'running') return { done: true }
  if (seen.desired === 'stopped') return { done: false, failed: { code: 'desired_changed', message: `it is desired stopped (stopped meanwhile, or made with --stopped: vgrid vm start starts it); now ${now}` } }
  if (seen.state === 'failed') return { done: false, failed: { code: 'vm_failed', message: `it failed: ${seen.reason ?? 'no reason given'} (vgrid vm show says more; vgrid vm start tries again)` } }
  if (seen.state === 'stopped') return { done: false, failed: { code: 'vm_ended', message: `it ran and ended, and its restart policy leaves it stopped${seen.reason != null ? `: ${seen.reason}` : ''} (vgrid vm start runs it again)` } }
  return { done: false, now }
}

/** `--timeout` of a wait: seconds, or a duration (90s, 10m); `dflt` when not given */
export function waitTimeoutMs (given: string | undefined, dflt = 300_000): number {
  const ms = given == null ? dflt : /^[0-9]+(\.[0-9]+)?$/.test(given) ? Number(given) * 1000 : durationMs(given)
  if (ms == null || !(ms > 0) || ms > MAX_TIMER_MS) throw new CliError(`--timeout "${String(given)}" is not a duration above 0 and at most 24 days (90s, 10m, or a number of seconds)`, 2)
  return ms
}

/** the API errors a wait rides out: the agent restarting, or slow for a moment */
const PASSING = new Set(['agent_unreachable', 'agent_timeout'])

export interface WaitOptions {
  timeoutMs: number
  /** a line each time what the VM is changes (text mode; none with --json) */
  progress?: (line: string) => void
  pollMs?: number
}

/**
 * Polls `GET /v1/vms/NAME` until `waitVerdict` says done (the VM's last detail, or null
 * once gone) or failed (a CliError with the verdict's code), or the timeout passes
 * (code `timeout`, what it is now said).
 */
export async function waitForVm (api: { get: <T>(path: string) => Promise<T> }, name: string, want: WaitFor, o: WaitOptions): Promise<VmDetail | null> {
  const end = Date.now() + o.timeoutMs
  let said = ''
  let last = 'not looked at yet'
  for (;;) {
    let seen: VmSeen
    let detail: VmDetail | null = null
    try {
      detail = await api.get<VmDetail>(`/v1/vms/${encodeURIComponent(name)}`)
      seen = { kind: 'vm', name: detail.name, state: detail.state, desired: detail.desired, node: detail.node, reason: detail.reason }
    } catch (err) {
      const e = err as { code?: string, detail?: string, message?: string }
      if (e.code === 'not_found') seen = { kind: 'gone' }
      else if (e.code === 'still_stopping') seen = { kind: 'stopping', message: e.detail ?? String(e.message) }
      else if (err instanceof CliError && PASSING.has(err.code) && Date.now() < end) {
        if (said !== err.code) o.progress?.(`${name}: ${err.detail} (waiting on)`)
        said = err.code
        await new Promise(resolve => setTimeout(resolve, o.pollMs ?? 500))
        continue
      } else throw err
    }
    const v = waitVerdict(want, seen)
    if (v.done) return detail
    if (v.failed != null) throw new CliError(`${name}: will not be ${want}: ${escapeControls(v.failed.message)}`, 1, { code: v.failed.code })
    last = v.now
    if (last !== said) o.progress?.(escapeControls(`${name}: ${last}`))
    said = last
    if (Date.now() >= end) throw new CliError(`${name}: not ${want} after ${Math.round(o.timeoutMs / 1000)} s: ${escapeControls(last)}`, 1, { code: 'timeout' })
    await new Promise(resolve => setTimeout(resolve, Math.min(o.pollMs ?? 500, Math.max(0, end - Date.now()))))
  }
}
