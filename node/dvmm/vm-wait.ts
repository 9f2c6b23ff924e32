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
  /** a VM of the name made since the one the wait began on (another `created`) */
  | { kind: 'replaced' }

export interface VerdictOptions {
  /** the wait follows the caller's own `vm rm`: a VM of the name found is a new one, made once the old run had ended (createVmIn refuses it before) */
  afterRm?: boolean
  /** the wait follows the caller's own start, stop or create: a desired state changed meanwhile (another request won) ends it */
  asked?: boolean
}

export type WaitVerdict =
  | { done: true, failed?: undefined, note?: string }
  | { done: false, failed: { code: string, message: string } }
  | { done: false, failed?: undefined, now: string }

/**
 * Whether the wait is over (`done`), can no longer end as asked (`failed`: a state no
 * change of the grid's leads out of without a new request), or goes on (`now`: what it
 * is meanwhile). Pure.
 * - running: `failed` (a failed start, the crash rule) and a lease left `stopped` while
 *   desired running (its command ended: `completed` when cleanly and its policy keeps it
 *   so, else a crash under restart never) are final; pending, starting, paused, unknown
 *   and a `stopped` whose lease is not (a fence's kill, an end not yet written) pass
 *   (rv51: a fenced VM was called ended).
 * - stopped: stopped or failed (nothing runs).
 * - gone: no VM of the name and no run of a removed one still stopping; a VM of the name
 *   made since is a new one: the one waited for is gone.
 * A desired state that is not the one waited for ends a wait that follows the caller's
 * own request (`asked`: another request won); `vgrid vm wait` waits on (bb51: a job
 * under restart never, which stops by itself, could not be waited for).
 */
export function waitVerdict (want: WaitFor, seen: VmSeen, o: VerdictOptions = {}): WaitVerdict {
  if (seen.kind === 'replaced') return want === 'gone' ? { done: true, note: 'removed, and a new VM of the name made since' } : { done: false, failed: { code: 'not_found', message: 'it was removed, and a new VM of the name made since' } }
  if (seen.kind === 'gone') return want === 'gone' ? { done: true } : { done: false, failed: { code: 'not_found', message: 'it was removed' } }
  if (seen.kind === 'stopping') return want === 'gone' ? { done: false, now: seen.message } : { done: false, failed: { code: 'not_found', message: seen.message } }
  const now = `${seen.state}${seen.node != null ? ` on ${seen.node}` : ''}${seen.reason != null ? ` (${seen.reason})` : ''}`
  if (want === 'gone') return o.afterRm === true ? { done: true, note: 'its run ended, and a new VM of the name was made meanwhile' } : { done: false, now: `${now}; it is not removed (vgrid vm rm removes it)` }
  if (want === 'stopped') {
    if (seen.state === 'stopped' || seen.state === 'failed') return { done: true }
    if (seen.desired === 'running' && o.asked === true) return { done: false, failed: { code: 'desired_changed', message: `it is desired running (started through another node meanwhile: vgrid vm stop stops it); now ${now}` } }
    return { done: false, now }
  }
  if (seen.state === 'running') return { done: true }
  if (seen.desired === 'stopped') {
    if (o.asked === true) return { done: false, failed: { code: 'desired_changed', message: `it is desired stopped (stopped through another node meanwhile: vgrid vm start starts it); now ${now}` } }
    return { done: false, now: `${now}; desired stopped: waiting for a start` }
  }
  if (seen.state === 'failed') return { done: false, failed: { code: 'vm_failed', message: `it failed: ${seen.reason ?? 'no reason given'} (vgrid vm show says more; vgrid vm start tries again)` } }
  // an agent of an earlier release shows these `stopped`; this one's, `failed` (view.ts vmState) but a clean end
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

/** the API errors a wait rides out once it has reached the agent: the agent restarting (`agent_down`: the demo's bridge to a namespace's agent), or slow for a moment */
const PASSING = new Set(['agent_unreachable', 'agent_timeout', 'agent_down'])

/** the CLI's own wait for one answer (client.ts), cut to what is left of the wait's */
const ANSWER_MS = 30_000

export interface WaitOptions extends VerdictOptions {
  timeoutMs: number
  /** a line each time what the VM is changes (text mode; none with --json) */
  progress?: (line: string) => void
  pollMs?: number
  /** how long one look may take before it counts as an agent_timeout (ANSWER_MS; tests set it short) */
  answerMs?: number
}

/**
 * Polls `GET /v1/vms/NAME` until `waitVerdict` says done (the VM's last detail, or null
 * once gone) or failed (a CliError with the verdict's code), or the timeout passes
 * (code `timeout`, what it is now said).
 */
export async function waitForVm (api: { get: <T>(path: string) => Promise<T> }, name: string, want: WaitFor, o: WaitOptions): Promise<{ detail: VmDetail | null, note?: string }> {
  const end = Date.now() + o.timeoutMs
  // a progress line is said when it says something new, not when a countdown in it moves (bb51)
  let said = ''
  let last = 'not looked at yet'
  // the caller's own request reached the agent: a restart of it is ridden out from the first look (rv53)
  let looked = o.asked === true || o.afterRm === true
  let created: number | null | undefined
  const timedOut = (): CliError => new CliError(`${name}: not ${want} after ${Math.round(o.timeoutMs / 100) / 10} s: ${escapeControls(last)}`, 1, { code: 'timeout' })
  const say = (line: string): void => {
    // countdowns only: a node's name or a crash count changing is news (rv53)
    const shape = line.replace(/\d+(\.\d+)? ?(ms|s|min|h)\b/g, '#')
    if (shape !== said) o.progress?.(line)
    said = shape
  }
  for (;;) {
    let seen: VmSeen
    let detail: VmDetail | null = null
    try {
      // the wait's timeout holds whatever the agent does (bb51: one stopped held each request 30 s)
      // a look gets a second at least, so the last one is judged; one that hangs past the
      // CLI's own answer time is an agent_timeout, ridden out (rv53: it ended the wait)
      const left = end - Date.now()
      const answerMs = o.answerMs ?? ANSWER_MS
      detail = await withDeadline(api.get<VmDetail>(`/v1/vms/${encodeURIComponent(name)}`), Math.max(Math.min(1000, answerMs), Math.min(answerMs, left)), () => left <= answerMs
        ? timedOut()
        : new CliError(`the vgrid agent did not answer within ${answerMs / 1000} s`, 1, { code: 'agent_timeout' }))
      created ??= detail.created
      seen = detail.created != null && created != null && detail.created !== created
        ? { kind: 'replaced' }
        : { kind: 'vm', name: detail.name, state: detail.state, desired: detail.desired, node: detail.node, reason: detail.reason, lease: detail.lease }
    } catch (err) {
      const e = err as { code?: string, detail?: string, message?: string }
      if (e.code === 'not_found') seen = { kind: 'gone' }
      else if (e.code === 'still_stopping') seen = { kind: 'stopping', message: e.detail ?? String(e.message) }
      // an agent never reached is a wrong address, said at once (bb51: retried for the whole timeout)
      else if (err instanceof CliError && PASSING.has(err.code) && looked && Date.now() < end) {
        say(`${name}: ${err.detail} (waiting on)`)
        await new Promise(resolve => setTimeout(resolve, Math.min(o.pollMs ?? 500, Math.max(0, end - Date.now()))))
        continue
      } else throw err
    }
    // a VM never seen: not one that was removed meanwhile (rv51)
    if (!looked && seen.kind === 'gone' && want !== 'gone') throw new CliError(`no VM "${escapeControls(name)}"`, 1, { code: 'not_found' })
    looked = true
    const v = waitVerdict(want, seen, o)
    if (v.done) return { detail: seen.kind === 'vm' && v.note == null ? detail : null, ...(v.note != null ? { note: v.note } : {}) }
    if (v.failed != null) throw new CliError(`${name}: will not be ${want}: ${escapeControls(v.failed.message)}`, 1, { code: v.failed.code })
    last = v.now
    say(escapeControls(`${name}: ${last}`))
    if (Date.now() >= end) throw timedOut()
    await new Promise(resolve => setTimeout(resolve, Math.min(o.pollMs ?? 500, Math.max(0, end - Date.now()))))
  }
}

/** `p`, or the error `late` makes once `ms` have passed (the request is left to end with the process) */
async function withDeadline <T> (p: Promise<T>, ms: number, late: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(late()) }, Math.max(0, ms)) })])
  } finally { clearTimeout(timer) }
}
