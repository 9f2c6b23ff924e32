// Every run of every `process` VM of a grid, as the VMs themselves tell it: each run
// appends "start PID MS CWD" to one log outside every namespace (its working
// directory is its run dir, <host>/data/dvmm/run/process/<vm>, so it says where it
// runs) and "stop PID MS" when it gets SIGTERM (a graceful stop). A kill (SIGKILL: a
// fence, the watchdog) cannot be told by the VM, so a poller watches each run's pid
// (with its start time, against reuse) and notes when it is gone: an upper bound of
// the real end, so "the next run started after this one ended" is never claimed
// wrongly.
import { existsSync, readFileSync } from 'node:fs'

const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`

export interface VmRun {
  vm: string
  host: string
  pid: number
  /** ms, the VM's own clock at its start */
  startedAt: number
  /** ms: the VM's own "stop" record, or when the poller first found its pid gone */
  endedAt?: number
  how?: 'term' | 'gone'
}

/**
 * The command of a VM that records its runs in `log`. It exits on SIGTERM (after
 * recording it) and otherwise sleeps forever; `sleep & wait` keeps the shell able to
 * run its trap at once.
 */
export function recordingCommand (log: string): string[] {
  const script = `echo "start $$ $(date +%s%3N) $(pwd)" >> ${log}; ` +
    `trap 'echo "stop $$ $(date +%s%3N)" >> ${log}; exit 0' TERM; ` +
    'while :; do sleep 3600 & wait $!; done'
  return ['/bin/sh', '-c', script]
}

const RUN_DIR = /\/([^/]+)\/data\/dvmm\/run\/process\/([^/]+)\/?$/

/** a process's start time in clock ticks since boot (undefined: gone, or a zombie): tells a pid's reuse apart */
export function startTicks (pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const s = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return s[0] === 'Z' || s[0] === 'X' ? undefined : Number(s[19])
  } catch {
    return undefined
  }
}

export class RunLog {
  readonly file: string
  readonly runs: VmRun[] = []
  private readonly ticks = new Map<VmRun, number | undefined>()
  private offset = 0
  private timer?: NodeJS.Timeout

  constructor (file: string) { this.file = file }

  /** Polls every `ms` until stop(). */
  watch (ms = 20): this {
    this.timer ??= setInterval(() => { this.poll() }, ms)
    return this
  }

  stop (): void { clearInterval(this.timer); this.timer = undefined }

  poll (): void {
    const now = Date.now()
    if (existsSync(this.file)) {
      const text = readFileSync(this.file, 'utf8')
      // only whole lines: a run may be writing one right now
      const end = text.lastIndexOf('\n') + 1
      for (const line of text.slice(this.offset, end).split('\n')) this.line(line)
      this.offset = end
    }
    for (const r of this.runs) {
      if (r.endedAt != null) continue
      const t = startTicks(r.pid)
      if (t === undefined || t !== this.ticks.get(r)) { r.endedAt = now; r.how = 'gone' }
    }
  }

  private line (line: string): void {
    const [kind, pid, ms, cwd] = line.trim().split(' ')
    if (kind === 'start') {
      const m = RUN_DIR.exec(cwd ?? '')
      const run: VmRun = { vm: m?.[2] ?? '?', host: m?.[1] ?? '?', pid: Number(pid), startedAt: Number(ms) }
      this.runs.push(run)
      this.ticks.set(run, startTicks(run.pid))
    } else if (kind === 'stop') {
      // a run seen gone may have written its stop line just before it ended, after the
      // poll that read the file: the line is what happened, and when
      const r = this.runs.find(x => x.pid === Number(pid) && (x.endedAt == null || x.how === 'gone'))
      if (r != null) { r.endedAt = Number(ms); r.how = 'term' }
    }
  }

  of (vm: string): VmRun[] { return this.runs.filter(r => r.vm === vm) }
  live (vm?: string): VmRun[] { return this.runs.filter(r => r.endedAt == null && (vm == null || r.vm === vm)) }
}

/** Pairs of runs of one VM that overlap in time (sorted by start; a live run ends never). */
export function overlaps (runs: readonly VmRun[]): Array<[VmRun, VmRun]> {
  const out: Array<[VmRun, VmRun]> = []
  const byVm = new Map<string, VmRun[]>()
  for (const r of runs) byVm.set(r.vm, [...byVm.get(r.vm) ?? [], r])
  for (const list of byVm.values()) {
    const s = [...list].sort((a, b) => a.startedAt - b.startedAt)
    for (let i = 0; i < s.length; i++) {
      for (let j = i + 1; j < s.length; j++) {
        if ((s[i]!.endedAt ?? Infinity) >= s[j]!.startedAt) out.push([s[i]!, s[j]!])
      }
    }
  }
  return out
}

/** One line per run, for logs and failure messages. */
export function describeRuns (runs: readonly VmRun[], t0 = 0): string {
  const at = (ms: number | undefined): string => ms == null ? 'still running' : secs(ms - t0)
  return [...runs].sort((a, b) => a.vm < b.vm ? -1 : a.vm > b.vm ? 1 : a.startedAt - b.startedAt)
    .map(r => `${r.vm} on ${r.host} pid ${r.pid}: ${at(r.startedAt)} .. ${at(r.endedAt)}${r.how != null ? ` (${r.how})` : ''}`).join('\n')
}

/** The runs a VM's command recorded as `PID START_MS` lines (`echo "$$ $(date +%s%3N)" >> FILE`), oldest first. */
export function simpleRuns (file: string): Array<{ pid: number, startedAt: number }> {
  return existsSync(file)
    ? readFileSync(file, 'utf8').split('\n').filter(l => l !== '').map(l => { const [p, s] = l.split(' '); return { pid: Number(p), startedAt: Number(s) } })
    : []
}

/** Polls `f` every 100 ms until it gives a value (errors count as not yet). */
export async function until<T> (what: string, ms: number, f: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = await Promise.resolve().then(f).catch(() => undefined)
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`timed out after ${secs(ms)} waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/** where each VM runs, as a host's /v1/vms says */
interface VmRows { api: <T>(p: string) => Promise<T> }
const rowsOf = async (h: VmRows): Promise<Array<{ name: string, node: string | null, epoch: number | null, state: string }>> => (await h.api<{ vms: Array<{ name: string, node: string | null, epoch: number | null, state: string }> }>('/v1/vms')).vms

/**
 * After a heal: every host agrees where each VM runs and that it runs, and then (once any
 * stale decision of a rejoined host had time to act) each VM runs exactly once, where the
 * lease `asked` reads says, and no two runs of one VM ever overlapped.
 */
export async function checkRunsOnceAfterHeal (t: { is: (a: unknown, b: unknown, m?: string) => void, deepEqual: (a: unknown, b: unknown, m?: string) => void }, hosts: readonly VmRows[], asked: VmRows, log: RunLog, vms: readonly string[], agreeMs: number): Promise<void> {
  await until('every host to agree on every lease', agreeMs, async () => {
    const views = await Promise.all(hosts.map(async h => JSON.stringify((await rowsOf(h)).map(r => [r.name, r.node, r.epoch, r.state]))))
    return new Set(views).size === 1 && JSON.parse(views[0]!).every((r: unknown[]) => r[3] === 'running') ? true : undefined
  })
  await new Promise(resolve => setTimeout(resolve, 4000))
  log.poll()
  const after = await rowsOf(asked)
  for (const v of vms) {
    const live = log.live(v)
    t.is(live.length, 1, `${v} runs exactly once after healing`)
    t.is(live[0]?.host ?? null, after.find(r => r.name === v)!.node, `${v} runs where its lease says`)
  }
  t.deepEqual(overlaps(log.runs).map(([a, b]) => `${a.vm}: ${a.host} pid ${a.pid} and ${b.host} pid ${b.pid}`), [], 'no two runs of one VM overlap')
}
