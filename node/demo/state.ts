// What a running demo made, kept where another shell can find it: the state file
// names the demo's PID and directory; every namespace it makes is named PREFIX-*.
// `vgrid demo --stop` signals that PID, and when the demo is gone (or was killed
// before it could clean up) removes the leftovers itself from these two facts.
import { readFileSync, readdirSync, renameSync, rmSync, writeFileSync, openSync, closeSync, writeSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { deleteNamespace, isAlive, listNamespaces, sleep } from '../netns/netns.ts'
import { killAllVms, removeNetworks } from '../dvmm/watchdog/kill.ts'
import { groupsOfDataDir, removeGroups } from '../dvmm/host/cgroups.ts'

export const DEMO_DIR = '/run/vgrid-demo'
export const STATE_FILE = `${DEMO_DIR}/state.json`
/** namespaces: vgdemo-sw (the switch) and vgdemo-host1... */
export const PREFIX = 'vgdemo'

export interface DemoState {
  pid: number
  started: string
  hosts: Array<{ name: string, ns: string, address: string, api: string }>
}

export function readState (): DemoState | undefined {
  try {
    return JSON.parse(readFileSync(STATE_FILE, 'utf8')) as DemoState
  } catch {
    return undefined
  }
}

/** Is `pid` a live `vgrid demo` (and not some process that got a reused PID)? */
export function isDemoProcess (pid: number): boolean {
  if (!isAlive(pid)) return false
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('demo')
  } catch {
    return false
  }
}

export type Claim = { ok: true } | { ok: false, running: DemoState }

/**
 * Takes the state file for this process (O_EXCL, so two demos starting at once
 * cannot both win). A file whose demo is dead is a leftover: the caller cleans up
 * and claims again.
 */
export function claimState (): Claim | 'stale' {
  mkdirSync(DEMO_DIR, { recursive: true, mode: 0o700 })
  const mine: DemoState = { pid: process.pid, started: new Date().toISOString(), hosts: [] }
  try {
    const fd = openSync(STATE_FILE, 'wx', 0o600)
    writeSync(fd, JSON.stringify(mine, null, 2))
    closeSync(fd)
    return { ok: true }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  const st = readState()
  if (st != null && st.pid !== process.pid && isDemoProcess(st.pid)) return { ok: false, running: st }
  return 'stale'
}

export function writeState (st: DemoState): void {
  // whole or not at all: --stop may read it at any moment
  writeFileSync(STATE_FILE + '.tmp', JSON.stringify(st, null, 2), { mode: 0o600 })
  renameSync(STATE_FILE + '.tmp', STATE_FILE)
}

export async function demoNamespaces (): Promise<string[]> {
  return (await listNamespaces()).filter(ns => ns.startsWith(`${PREFIX}-`))
}

/**
 * Removes everything a demo made, whether or not it is still running: its
 * namespaces (and the processes inside them, by PID), then its directory, the
 * state file last. Hosts first, the switch last.
 */
export async function removeDemo (say: (line: string) => void, graceMs = 0): Promise<void> {
  const all = await demoNamespaces()
  const hosts = all.filter(ns => ns !== `${PREFIX}-sw`)
  // every VM a host's data dir has a run of, whichever agent started it (one restarted
  // by hand is no child of the demo, and the guards die with the host namespaces)
  const dirs = demoDataDirs()
  const victims = dirs.flatMap(d => killAllVms(d, Date.now()))
  if (victims.length > 0) say(`killed ${victims.length} VM(s) left running: ${victims.map(v => v.id).join(' ')}`)
  removeNetworks(victims)
  // and the groups of VMs that ended with no agent to remove them (a host whose agent was
  // killed, its watchdog killed the VMs: bb21 left a qemu VM's groups behind)
  await removeGroups([...new Set([...victims.flatMap(v => v.cgroups), ...dirs.flatMap(groupsOfDataDir)])]).catch(() => {})
  if (all.length > 0) say(`removing ${all.join(' ')}`)
  await Promise.all(hosts.map(async ns => await deleteNamespace(ns, graceMs)))
  if (all.includes(`${PREFIX}-sw`)) await deleteNamespace(`${PREFIX}-sw`)
  rmSync(DEMO_DIR, { recursive: true, force: true })
}

/** the data dirs of the demo's hosts (DEMO_DIR/HOST/data) */
function demoDataDirs (): string[] {
  try {
    return readdirSync(DEMO_DIR, { withFileTypes: true }).filter(e => e.isDirectory()).map(e => join(DEMO_DIR, e.name, 'data'))
  } catch { return [] }
}

/** `vgrid demo --stop`: ask the demo to stop; if it does not, or is gone, clean up after it. */
export async function stopDemo (say: (line: string) => void): Promise<void> {
  const st = readState()
  const leftovers = await demoNamespaces()
  if (st == null && leftovers.length === 0) {
    say('no demo is running')
    return
  }
  if (st != null && isDemoProcess(st.pid)) {
    say(`stopping the demo (pid ${st.pid})`)
    process.kill(st.pid, 'SIGTERM')
    const until = Date.now() + 20_000
    while (isAlive(st.pid) && Date.now() < until) await sleep(100)
    if (isAlive(st.pid)) say(`the demo (pid ${st.pid}) did not stop within 20 s; removing what it made from here`)
  } else if (st != null) {
    say(`the demo (pid ${st.pid}) is gone without cleaning up; removing what it left`)
  }
  if ((await demoNamespaces()).length > 0 || readState() != null) await removeDemo(say)
  say('demo stopped; nothing of it is left')
}
