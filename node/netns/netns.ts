// Network-namespace primitives: the one place that drives `ip` and `nft` to make
// hosts on one machine. Both the e2e test harness (test/harness) and `vgrid demo`
// build on these, so the plumbing exists once.
//
// Everything made here lives in namespaces we create: interfaces are created
// directly inside them (`ip -n NS link add ... peer ... netns SW`), so the root
// namespace's networking is never touched, and deleting a namespace takes its
// interfaces with it. Processes inside a namespace keep it alive, so deletion kills
// the PIDs `ip netns pids` reports for it first (never anything found by name).
import { spawn, execFileSync } from 'node:child_process'
import { accessSync, constants, readFileSync, rmSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import { readdir, readlink } from 'node:fs/promises'

export class NetnsError extends Error {
  override name = 'NetnsError'
}

/**
 * Absolute path of a system program: PATH (plus the sbin dirs a non-login root shell
 * may lack), skipping node_modules/.bin. That matters: under npx, @vercel/nft (a
 * dependency of ava) puts a `nft` there that is not nftables and exits 0.
 */
export function which (prog: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/bin', '/bin']
  for (const d of dirs) {
    if (d === '' || d.includes('node_modules')) continue
    try {
      accessSync(join(d, prog), constants.X_OK)
      return join(d, prog)
    } catch {}
  }
  return undefined
}

/**
 * `argv` run so that the kernel ends it when this process ends, however it ends
 * (util-linux `setpriv --pdeathsig KILL`, which execs it: the child's pid is the
 * command's own); without setpriv, `argv` as it is, ended only by its caller.
 */
export function tiedArgv (argv: readonly string[]): string[] {
  const setpriv = which('setpriv')
  return setpriv == null ? [...argv] : [setpriv, '--pdeathsig', 'KILL', '--', ...argv]
}

/** the processes that hold any of these sockets (by inode) open, from /proc/PID/fd (root sees every process's) */
export async function socketHolderPids (inodes: readonly number[]): Promise<number[]> {
  const wanted = new Set(inodes.map(i => `socket:[${i}]`))
  if (wanted.size === 0) return []
  const pids: number[] = []
  for (const entry of await readdir('/proc').catch(() => [])) {
    if (!/^\d+$/.test(entry)) continue
    for (const fd of await readdir(`/proc/${entry}/fd`).catch(() => [])) {
      if (wanted.has(await readlink(`/proc/${entry}/fd/${fd}`).catch(() => ''))) { pids.push(Number(entry)); break }
    }
  }
  return pids
}

export interface Support { ok: boolean, reason?: string }

/**
 * Can this process make namespace hosts? Needs root, `ip` (iproute2) and, when
 * `nft` is asked for, nftables. Says exactly what is missing and how to get it.
 */
export function checkSupport (opts: { nft?: boolean } = {}): Support {
  if (process.platform !== 'linux') return { ok: false, reason: 'network namespaces need Linux' }
  if (process.getuid?.() !== 0) return { ok: false, reason: 'network namespaces need root (run as root, e.g. with sudo)' }
  if (which('ip') == null) return { ok: false, reason: '`ip` not found (install iproute2: apt-get install -y iproute2)' }
  if (opts.nft === true && which('nft') == null) return { ok: false, reason: '`nft` not found (install nftables: apt-get install -y nftables)' }
  return { ok: true }
}

export interface RunOptions { input?: string, timeoutMs?: number, allowFail?: boolean }

/** Runs a command, resolves its stdout; rejects with its stderr (unless allowFail). */
export async function run (cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  return await new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 15_000)
    p.stdout.on('data', (d: Buffer) => { out += d.toString() })
    p.stderr.on('data', (d: Buffer) => { err += d.toString() })
    p.on('error', e => { clearTimeout(timer); reject(new NetnsError(`${cmd}: ${e.message}`)) })
    p.on('close', code => {
      clearTimeout(timer)
      if (code === 0 || opts.allowFail === true) resolve(out)
      else reject(new NetnsError(`${cmd} ${args.join(' ')}: ${err.trim() || `exit ${code}`}`))
    })
    // a command that exits without reading its stdin must not crash us with EPIPE
    p.stdin.on('error', () => {})
    p.stdin.end(opts.input ?? '')
  })
}

/** `ip` by absolute path (see which()). */
export function ipPath (): string {
  return which('ip') ?? 'ip'
}

export function nsenterPath (): string {
  return which('nsenter') ?? 'nsenter'
}

export async function ip (args: string[], opts: RunOptions = {}): Promise<string> {
  return await run(ipPath(), args, opts)
}

/** Runs a command inside a namespace; a bare command name is resolved as a system program. */
export async function nsRun (ns: string, cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  const prog = cmd.includes('/') ? cmd : which(cmd) ?? cmd
  return await run(ipPath(), ['netns', 'exec', ns, prog, ...args], opts)
}

// ---- namespaces ---------------------------------------------------------------

export async function listNamespaces (): Promise<string[]> {
  const out = await ip(['netns', 'list'], { allowFail: true })
  // lines look like "name" or "name (id: 3)"
  return out.split('\n').map(l => l.trim().split(/\s+/)[0] ?? '').filter(n => n !== '')
}

export function listNamespacesSync (): string[] {
  try {
    return execFileSync(ipPath(), ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n').map(l => l.trim().split(/\s+/)[0] ?? '').filter(n => n !== '')
  } catch {
    return []
  }
}

export async function namespacePids (ns: string): Promise<number[]> {
  const out = await ip(['netns', 'pids', ns], { allowFail: true })
  return out.split(/\s+/).filter(s => /^\d+$/.test(s)).map(Number)
}

/** Creates a namespace with its loopback up. */
export async function createNamespace (ns: string, onCreated?: () => void): Promise<void> {
  await ip(['netns', 'add', ns])
  onCreated?.()
  await ip(['-n', ns, 'link', 'set', 'lo', 'up'])
}

/**
 * Namespaces named KIND-PID-... whose PID no longer runs: leftovers of a run that
 * was killed before it could clean up (its owner's PID is part of every name).
 */
export async function findStale (kind: string): Promise<string[]> {
  const re = new RegExp(`^${kind}-(\\d+)-`)
  return (await listNamespaces()).filter(ns => {
    const m = re.exec(ns)
    return m != null && !isAlive(Number(m[1]))
  })
}

/** Whether `pid` runs; a zombie (exited, not yet reaped by its parent) does not. */
export function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  try {
    // "PID (comm) STATE ...": comm may hold spaces and parentheses, so split at the last ")"
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return true
  }
}

function killPid (pid: number, signal: NodeJS.Signals): void {
  try { process.kill(pid, signal) } catch {}
}

/**
 * Removes a namespace we made: the processes still inside it (by PID) get SIGTERM,
 * then SIGKILL after `graceMs`, then the namespace goes (and with it every
 * interface in it, and the other end of every veth pair).
 */
export async function deleteNamespace (ns: string, graceMs = 0): Promise<void> {
  const links = await linkNames(ns)
  let pids = await namespacePids(ns)
  if (pids.length > 0 && graceMs > 0) {
    for (const p of pids) killPid(p, 'SIGTERM')
    const until = Date.now() + graceMs
    while (pids.some(isAlive) && Date.now() < until) await sleep(50)
  }
  // rounds, because a supervisor (install.sh's background service) may fork a new
  // child between our listing and our kill; a process left in a namespace whose
  // name is gone would keep running there unseen
  for (let round = 0; round < 5; round++) {
    pids = await namespacePids(ns)
    if (pids.length === 0) break
    for (const p of pids) killPid(p, 'SIGKILL')
    const until = Date.now() + 3000
    while (pids.some(isAlive) && Date.now() < until) await sleep(20)
  }
  await ip(['netns', 'del', ns], { allowFail: true })
  removeWireguardSockets(links)
  removeEtcNetns(ns)
}

/**
 * /etc/netns/NAME holds files `ip netns exec NAME` binds over /etc (a process VM's
 * /etc/hosts): iproute2's convention makes it the namespace's, so it goes with it.
 */
function removeEtcNetns (ns: string): void {
  if (!/^[A-Za-z0-9_.-]+$/.test(ns) || ns === '.' || ns === '..') return
  rmSync(join('/etc/netns', ns), { recursive: true, force: true })
}

/** The names of a namespace's interfaces. */
export async function linkNames (ns: string): Promise<string[]> {
  const out = await ip(['-n', ns, '-o', 'link', 'show'], { allowFail: true })
  return out.split('\n').map(l => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1]).filter((n): n is string => n != null)
}

/**
 * wireguard-go keeps its control socket in /run/wireguard, shared by every namespace
 * of the machine, and leaves it behind when it is killed: remove those of the
 * namespace's own interfaces, by name.
 */
export function removeWireguardSockets (links: string[]): void {
  for (const name of links) {
    try { rmSync(`/run/wireguard/${name}.sock`) } catch {}
  }
}

/** The same, synchronously, for process 'exit' handlers where nothing async runs. */
export function deleteNamespaceSync (ns: string): void {
  let links: string[] = []
  try {
    links = execFileSync(ipPath(), ['-n', ns, '-o', 'link', 'show'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n').map(l => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1]).filter((n): n is string => n != null)
  } catch {}
  try {
    const out = execFileSync(ipPath(), ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    for (const p of out.split(/\s+/).filter(s => /^\d+$/.test(s))) killPid(Number(p), 'SIGKILL')
  } catch {}
  try { execFileSync(ipPath(), ['netns', 'del', ns], { stdio: 'ignore' }) } catch {}
  removeWireguardSockets(links)
  removeEtcNetns(ns)
}

// ---- links and addresses --------------------------------------------------------

export async function createBridge (ns: string, name: string): Promise<void> {
  await ip(['-n', ns, 'link', 'add', name, 'type', 'bridge'])
  // multicast snooping could starve mDNS of its group traffic on a fresh bridge
  await ip(['-n', ns, 'link', 'set', name, 'type', 'bridge', 'mcast_snooping', '0'])
  await ip(['-n', ns, 'link', 'set', name, 'up'])
}

/**
 * A veth pair made directly across two namespaces: `hostIf` in `hostNs`, `portIf`
 * in `switchNs` enslaved to `bridge`. Neither end ever exists in the root namespace.
 */
export async function connectToBridge (o: { hostNs: string, hostIf: string, switchNs: string, portIf: string, bridge: string }): Promise<void> {
  await ip(['-n', o.hostNs, 'link', 'add', o.hostIf, 'type', 'veth', 'peer', 'name', o.portIf, 'netns', o.switchNs])
  await ip(['-n', o.switchNs, 'link', 'set', o.portIf, 'master', o.bridge])
  await ip(['-n', o.switchNs, 'link', 'set', o.portIf, 'up'])
  await ip(['-n', o.hostNs, 'link', 'set', o.hostIf, 'up'])
}

export async function setLink (ns: string, dev: string, up: boolean): Promise<void> {
  await ip(['-n', ns, 'link', 'set', dev, up ? 'up' : 'down'])
}

export async function addAddress (ns: string, dev: string, cidr: string): Promise<void> {
  await ip(['-n', ns, 'addr', 'add', cidr, 'dev', dev])
}

/**
 * Moves an interface from one address to another, new one first so it is never
 * bare. In the same subnet the new address is a secondary, which the kernel
 * deletes along with the primary unless promote_secondaries is on: so turn it on.
 */
export async function replaceAddress (ns: string, dev: string, oldCidr: string, newCidr: string): Promise<void> {
  await nsRun(ns, 'sh', ['-c', `echo 1 > /proc/sys/net/ipv4/conf/${dev}/promote_secondaries`])
  await ip(['-n', ns, 'addr', 'add', newCidr, 'dev', dev])
  await ip(['-n', ns, 'addr', 'del', oldCidr, 'dev', dev])
}

/**
 * mDNS sends to 224.0.0.251 through the routing table; a host with only its /24
 * has no route there. Links going down drop the route, so callers re-add it.
 */
export async function ensureMulticastRoute (ns: string, dev: string): Promise<void> {
  await ip(['-n', ns, 'route', 'replace', '224.0.0.0/4', 'dev', dev])
}

// ---- firewall (nftables) ----------------------------------------------------------

const CUT_TABLE = 'vgrid_cut'

/**
 * Drops all traffic between this namespace and `peers` (IPv4 addresses), both
 * ways: outgoing to them and incoming from them. Rules live in a table of their
 * own, so healing never touches anything else.
 */
export async function firewallCut (ns: string, peers: string[]): Promise<void> {
  if (peers.length === 0) return
  const script = [
    `table inet ${CUT_TABLE} {`,
    '  set peers { type ipv4_addr; }',
    '  chain input { type filter hook input priority -10; policy accept; ip saddr @peers drop; }',
    '  chain output { type filter hook output priority -10; policy accept; ip daddr @peers drop; }',
    '}',
    `add element inet ${CUT_TABLE} peers { ${peers.join(', ')} }`
  ].join('\n')
  await nsRun(ns, 'nft', ['-f', '-'], { input: script })
  // a cut that silently did not happen would make a test pass or fail for the wrong reason
  const have = await firewallCutPeers(ns)
  const missing = peers.filter(p => !have.includes(p))
  if (missing.length > 0) throw new NetnsError(`nft rules in ${ns} lack ${missing.join(', ')} (have: ${have.join(', ') || 'none'})`)
}

/** Lets traffic from `peers` (or everyone) through again. */
export async function firewallHeal (ns: string, peers?: string[]): Promise<void> {
  if (peers == null) {
    await nsRun(ns, 'nft', ['delete', 'table', 'inet', CUT_TABLE], { allowFail: true })
    return
  }
  if (peers.length === 0) return
  await nsRun(ns, 'nft', ['delete', 'element', 'inet', CUT_TABLE, 'peers', `{ ${peers.join(', ')} }`], { allowFail: true })
}

/** Addresses this namespace currently drops traffic to and from. */
export async function firewallCutPeers (ns: string): Promise<string[]> {
  const out = await nsRun(ns, 'nft', ['list', 'set', 'inet', CUT_TABLE, 'peers'], { allowFail: true })
  const m = /elements\s*=\s*\{([^}]*)\}/.exec(out)
  return m == null ? [] : m[1]!.split(',').map(s => s.trim()).filter(s => s !== '')
}

// ---- subnets -------------------------------------------------------------------------

function ipToInt (a: string): number {
  return a.split('.').reduce((n, o) => n * 256 + Number(o), 0)
}

function overlaps (a: string, b: string): boolean {
  const [an, al] = a.split('/') as [string, string | undefined]
  const [bn, bl] = b.split('/') as [string, string | undefined]
  const len = Math.min(Number(al ?? 32), Number(bl ?? 32))
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0
  return ((ipToInt(an) & mask) >>> 0) === ((ipToInt(bn) & mask) >>> 0)
}

/**
 * A /24 (as "A.B.C") that no route of the root namespace uses, so addresses we
 * hand out can never be mistaken for a real network here. Candidates come from
 * 10.213.0.0/16 then 172.29.0.0/16, starting at a `seed` so parallel runs spread
 * out (each run has its own bridge anyway, so equal subnets never meet).
 */
export async function pickSubnet (seed = 0): Promise<string> {
  const out = await ip(['-4', 'route', 'show', 'table', 'all'], { allowFail: true })
  // a line is "[type] DEST ...": local/broadcast/blackhole... routes carry a type first
  const used = out.split('\n').map(l => l.trim().split(/\s+/))
    .map(w => /^\d/.test(w[0] ?? '') ? w[0]! : w[1] ?? '')
    .filter(d => /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(d) && !d.startsWith('127.'))
    // catch-all routes (a VPN's 0.0.0.0/1) overlap everything; they are defaults in disguise
    .filter(d => Number(d.split('/')[1] ?? 32) >= 8)
  for (const base of ['10.213', '172.29']) {
    for (let i = 0; i < 256; i++) {
      const net = `${base}.${(seed + i) % 256}`
      if (!used.some(u => overlaps(`${net}.0/24`, u))) return net
    }
  }
  throw new NetnsError('no free /24 in 10.213.0.0/16 or 172.29.0.0/16 (every one overlaps a route)')
}

export async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}
