// The watchdog process: `node supervisor-main.ts DATA_DIR TIMEOUT_MS [CHECK_MS [IDLE_MS]]`.
// Spawned by the agent in a session of its own, so the agent's death (SIGKILL) or hang
// (SIGSTOP, a stalled event loop) does not touch it. The agent feeds it by rewriting
// the feed file; if the feed stops changing for longer than the timeout (shorter than
// the fence timeout), it kills every VM of this node and records when. A disarmed feed
// (clean agent exit) makes it exit without killing anything.
import { execFileSync } from 'node:child_process'
import { appendFileSync, constants, existsSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { writeSmall } from './small-file.ts'
import { setPriority } from 'node:os'
import { decide, feedKey, fedTimeout, nextDeadline, parseFeed } from './decide.ts'
import { killAllVms, removeNetworks } from './kill.ts'
import { removeGroups } from '../host/cgroups.ts'
import { watchdogPaths } from './paths.ts'
import { SleepClock } from './sleep-clock.ts'

/** the highest priority there is: the supervisor mostly sleeps, and runs for microseconds when it wakes */
const SUPERVISOR_NICE = -20

const [dataDir, timeoutArg, checkArg, idleArg] = process.argv.slice(2)
if (dataDir === undefined || !Number.isFinite(Number(timeoutArg)) || Number(timeoutArg) <= 0) {
  process.stderr.write('usage: supervisor-main.ts DATA_DIR TIMEOUT_MS [CHECK_MS [IDLE_MS]]\n')
  process.exit(2)
}
const root: string = dataDir
const timeoutMs = Number(timeoutArg)
const checkMs = Number(checkArg ?? Math.max(20, Math.floor(timeoutMs / 10)))
const paths = watchdogPaths(dataDir)
// monotonic, with the machine's sleeps counted: a server suspended past the timeout fires at its wake
const clock = new SleepClock()
const mono = (): number => clock.now()
const log = (msg: string): void => { try { appendFileSync(paths.log, `${new Date().toISOString()} ${msg}\n`) } catch {} }

// First in line for the CPU: when a stop of every process of the machine ends (SIGCONT
// to all of them, a hypervisor's pause, a long stall), this process must run before
// the VMs it is to kill, which run again beside their takeover until it does (a
// black-box tester saw 167 ms of that on a loaded machine). Its niceness and, where
// the kernel groups CPU time by session (sched_autogroup), its session's. Best effort:
// without CAP_SYS_NICE it runs at the default.
try { setPriority(SUPERVISOR_NICE) } catch {}
try { writeFileSync('/proc/self/autogroup', String(SUPERVISOR_NICE)) } catch {}

// Never the OOM killer's choice: its death leaves the VMs to their guards (below), who end them
try { writeFileSync('/proc/self/oom_score_adj', '-1000') } catch {}

// The VMs' guards (drivers/host-base.ts) wait on this FIFO, which this process holds
// open for writing as long as it lives. When it is gone (SIGKILLed with its agent: a
// `kill -9` of both, a cgroup kill of the service), nothing would fence the VMs any
// more: the guards read the FIFO's end and kill their VM, so it cannot run on beside
// its takeover elsewhere. Opened read-write, which never waits for a reader.
let aliveFd: number | undefined
try {
  let fifo = false
  try { fifo = statSync(paths.alive).isFIFO() } catch {}
  if (!fifo) {
    rmSync(paths.alive, { force: true })
    execFileSync('mkfifo', ['-m', '0600', paths.alive])
  }
  aliveFd = openSync(paths.alive, constants.O_RDWR)
} catch (err) {
  log(`could not hold ${paths.alive} (${(err as Error).message}): VMs started from now on run without their guard`)
}

// The guards also read this file each second: "BEATS TIMEOUT_MS", written in place at
// every check (a fixed width, never truncated: it needs no new block on a full disk).
// A supervisor stopped or stalled (SIGSTOP) while its agent is dead fences nothing and
// holds the FIFO open: its beats stop, and each guard kills its VM once they stopped
// for longer than the watchdog's timeout in force.
let beatFd: number | undefined
try { beatFd = openSync(paths.beat, constants.O_WRONLY | constants.O_CREAT, 0o600) } catch (err) {
  log(`could not open ${paths.beat} (${(err as Error).message}): the guards cannot tell if this supervisor stalls`)
}
let beats = 0
function beat (timeout: number): void {
  if (beatFd === undefined) return
  beats = (beats + 1) % 1e9
  try { writeSync(beatFd, `${String(beats).padStart(9, '0')} ${String(Math.round(timeout)).padStart(12, ' ')}\n`, 0) } catch {}
}

let lastKey: string | undefined
let lastChangeAt = mono()
let lastTimeout = timeoutMs
let deadline = lastChangeAt + timeoutMs
log(`armed pid=${process.pid} timeoutMs=${timeoutMs} checkMs=${checkMs}${aliveFd === undefined ? ' (no guard fifo)' : ''}`)

// checks every tenth of the timeout in force, and at least every second: the feed may
// shorten the timeout (an agent of a later run, or the fence timeout in force going
// down), and a check interval of a long timeout it was spawned with must not outlast it
const MAX_CHECK_MS = 1000
/**
 * Fired, with nothing left to kill this long and still no feed: it exits (an agent that
 * never comes back, all its VMs killed, left it running for ever, a process of its own
 * on every such server). A later agent run starts a new one before it starts a VM.
 */
const IDLE_AFTER_FIRE_MS = idleArg != null && Number(idleArg) > 0 ? Number(idleArg) : 60_000
/** when it last found a VM to kill (or fired first) */
let lastVictimAt: number | undefined
function check (): void {
  if (!existsSync(paths.dir)) { log('data dir gone; exiting'); process.exit(0) }
  let text: string | undefined
  try { text = readFileSync(paths.feed, 'utf8') } catch {}
  const key = feedKey(text)
  const now = mono()
  const fed = key !== lastKey
  if (fed) { lastKey = key; lastChangeAt = now }
  const feed = parseFeed(text)
  const t = fedTimeout(feed, timeoutMs)
  deadline = nextDeadline({ fed, deadline, lastChangeAt, prevTimeoutMs: lastTimeout, timeoutMs: t, now })
  lastTimeout = t
  beat(t)
  const v = decide({ feed, lastChangeAt, now, timeoutMs, deadline })
  if (v.action === 'exit') {
    log(`exit: ${v.why}`)
    process.exit(0)
  }
  if (v.action !== 'fire') lastVictimAt = undefined
  if (v.action === 'fire') {
    const victims = killAllVms(root, Date.now())
    if (victims.length > 0 || lastVictimAt === undefined) lastVictimAt = now
    else if (now - lastVictimAt >= IDLE_AFTER_FIRE_MS) {
      log(`exit: fired, and nothing left to kill for ${IDLE_AFTER_FIRE_MS / 1000} s with no feed (a later agent run starts a new supervisor)`)
      process.exit(0)
    }
    if (victims.length > 0) {
      const rec = { at: Date.now(), why: v.why, killed: victims.map(x => ({ id: x.id, driver: x.driver, pid: x.pid })) }
      try { appendFileSync(paths.fired, JSON.stringify(rec) + '\n') } catch {}
      log(`fired: ${v.why}; killed ${victims.map(x => `${x.driver}/${x.id}${x.damaged === true ? ' (by its groups: its run record is damaged)' : ''}`).join(' ')}`)
      // and their groups, once empty: an agent that never comes back (its server left the
      // grid, a demo stopped) would leave them for ever; one that does finds them gone
      void removeGroups(victims.flatMap(x => x.cgroups)).catch(() => {})
      removeNetworks(victims)
    }
  }
  setTimeout(check, Math.min(checkMs, MAX_CHECK_MS, Math.max(20, Math.floor(t / 10))))
}

setTimeout(check, Math.min(checkMs, MAX_CHECK_MS))

// the agent's terminal signals are not ours; only SIGKILL (or a disarm) ends the watchdog
for (const s of ['SIGINT', 'SIGHUP', 'SIGTERM', 'SIGPIPE'] as const) process.on(s, () => { log(`ignored ${s}`) })
try { writeSmall(paths.ready, String(process.pid)) } catch {}
