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

/**
 * What one look at the VM found: its row (with its lease's status: a `stopped` shown
 * while desired running may be a fence's kill, which starts again, or an end, which does
 * not), no VM of the name, or a removed one whose run is still stopping.
 */
export type VmSeen =
  | { kind: 'vm', name: string, state: string, desired: string, node: string | null, reason: string | null, lease?: { status?: string, completed?: boolean, parked?: boolean } | null }
  | { kind: 'gone' }
  | { kind: 'stopping', message: string }

export type WaitVerdict =
  | { done: true, failed?: undefined, note?: string }
  | { done: false, failed: { code: string, message: string } }
  | { done: false, failed?: undefined, now: string }

/**
 * Whether the wait is over (`done`), can no longer end as asked (`failed`: a state no
 * change of the grid's leads out of without a new request), or goes on (`now`: what it
 * is meanwhile). Pure.
 * - running: `failed` (a failed start) and a lease left `stopped` while desired running
 *   (its command ended: `completed` when cleanly and its policy keeps it so, else the
 *   crash rule or restart never after a crash) are final, as is a stop made meanwhile;
 *   pending, starting, paused, unknown and a `stopped` whose lease is not (a fence's
 *   kill, an end not yet written) pass (rv51: a fenced VM was called ended).
 * - stopped: stopped or failed (nothing runs); a start made meanwhile ends the wait.
 * - gone: no VM of the name and no run of a removed one still stopping. `afterRm`: the
 *   wait follows the caller's own rm, so a VM of the name found is a new one, made once
 *   the old run had ended (createVmIn refuses it before).
 */
export function waitVerdict (want: WaitFor, seen: VmSeen, afterRm = false): WaitVerdict {
  if (seen.kind === 'gone') return want === 'gone' ? { done: true } : { done: false, failed: { code: 'not_found', message: 'it was removed' } }
  if (seen.kind === 'stopping') return want === 'gone' ? { done: false, now: seen.message } : { done: false, failed: { code: 'not_found', message: seen.message } }
  const now = `${seen.state}${seen.node != null ? ` on ${seen.node}` : ''}${seen.reason != null ? ` (${seen.reason})` : ''}`
  if (want === 'gone') return afterRm ? { done: true, note: 'its run ended, and a new VM of the name was made meanwhile' } : { done: false, now: `${now}; it is not removed (vgrid vm rm removes it)` }
  if (want === 'stopped') {
    if (seen.state === 'stopped' || seen.state === 'failed') return { done: true }
    if (seen.desired === 'running') return { done: false, failed: { code: 'desired_changed', message: `it is desired running (started meanwhile, or never stopped: vgrid vm stop stops it); now ${now}` } }
    return { done: false, now }
  }
  if (seen.state === 'running') return { done: true }
  if (seen.desired === 'stopped') return { done: false, failed: { code: 'desired_changed', message: `it is desired stopped (stopped meanwhile, or made with --stopped: vgrid vm start starts it); now ${now}` } }
  if (seen.state === 'failed') return { done: false, failed: { code: 'vm_failed', message: `it failed: ${seen.reason ?? 'no reason given'} (vgrid vm show says more; vgrid vm start tries again)` } }
  const left = seen.state === 'stopped' && seen.lease?.status === 'stopped' && seen.lease.parked !== true
  if (left && seen.lease!.completed === true) return { done: false, failed: { code: 'vm_ended', message: `it ran and ended cleanly, and its restart policy leaves it stopped${seen.reason != null ? `: ${seen.reason}` : ''} (vgrid vm start runs it again)` } }
  if (left) return { done: false, failed: { code: 'vm_failed', message: `it ended and was left stopped${seen.reason != null ? `: ${seen.reason}` : ''} (vgrid vm show says more; vgrid vm start runs it again)` } }
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
  /** the wait follows the caller's own `vm rm` (waitVerdict) */
  afterRm?: boolean
  /** a line each time what the VM is changes (text mode; none with --json) */
  progress?: (line: string) => void
  pollMs?: number
}

/**
 * Polls `GET /v1/vms/NAME` until `waitVerdict` says done (the VM's last detail, or null
 * once gone) or failed (a CliError with the verdict's code), or the timeout passes
 * (code `timeout`, what it is now said).
 */
export async function waitForVm (api: { get: <T>(path: string) => Promise<T> }, name: string, want: WaitFor, o: WaitOptions): Promise<{ detail: VmDetail | null, note?: string }> {
  const end = Date.now() + o.timeoutMs
  let said = ''
  let last = 'not looked at yet'
  let looked = false
  for (;;) {
    let seen: VmSeen
    let detail: VmDetail | null = null
    try {
      detail = await api.get<VmDetail>(`/v1/vms/${encodeURIComponent(name)}`)
      seen = { kind: 'vm', name: detail.name, state: detail.state, desired: detail.desired, node: detail.node, reason: detail.reason, lease: detail.lease }
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
    // a VM never seen: not one that was removed meanwhile (rv51)
    if (!looked && seen.kind === 'gone' && want !== 'gone') throw new CliError(`no VM "${escapeControls(name)}"`, 1, { code: 'not_found' })
    looked = true
    const v = waitVerdict(want, seen, o.afterRm)
    if (v.done) return { detail: seen.kind === 'vm' && v.note == null ? detail : null, ...(v.note != null ? { note: v.note } : {}) }
    if (v.failed != null) throw new CliError(`${name}: will not be ${want}: ${escapeControls(v.failed.message)}`, 1, { code: v.failed.code })
    last = v.now
    if (last !== said) o.progress?.(escapeControls(`${name}: ${last}`))
    said = last
    if (Date.now() >= end) throw new CliError(`${name}: not ${want} after ${Math.round(o.timeoutMs / 100) / 10} s: ${escapeControls(last)}`, 1, { code: 'timeout' })
    await new Promise(resolve => setTimeout(resolve, Math.min(o.pollMs ?? 500, Math.max(0, end - Date.now()))))
  }
}
