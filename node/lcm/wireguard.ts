// The one typed wrapper around `wg` and `ip` for WireGuard. Everything the LCM does
// to a tunnel goes through here; the text it hands `wg` and reads back is
// wireguard-format.ts's.
//
// - Backend: the kernel module when `ip link add X type wireguard` works (probed for
//   real, in the target namespace), `wireguard-go` otherwise ($VGRID_WIREGUARD_GO names
//   another binary, or "none"). wireguard-go keeps its control socket in
//   /run/wireguard/NAME.sock, shared by every namespace of the machine, so names must
//   be unique per machine: interfaceName() derives one from the node id.
// - Secrets: private keys are generated and read through stdin/stdout and handed to
//   `wg` as config text on stdin (`wg addconf IF /dev/stdin`), never in argv, where
//   any process could read them from /proc. Public keys are public and may appear.
// - State: `wg show IF dump` (tab-separated, stable) is parsed, never screen output.
import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants, existsSync, writeFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { chmod, mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises'
import { getPriority } from 'node:os'
import { join } from 'node:path'
import { writeFileDurable } from '../durable-file.ts'
import { ip, run, sleep, socketHolderPids, tiedArgv, which, isAlive, type RunOptions } from '../netns/netns.ts'
import { lcmSocketNames, leftoverInterfaces, listenerInodes, type LinkEntry } from './leftovers.ts'
import { WireguardError, isLegacyNameOf, isValidEndpoint, isValidKey, parseDump, renderConfig, type InterfaceState, type PeerConfig } from './wireguard-format.ts'

/** WireGuard cannot run on this machine at all: the message says exactly why. */
export class WireguardUnavailableError extends WireguardError {
  override name = 'WireguardUnavailableError'
}

export type Backend = 'kernel' | 'userspace'

export interface Keypair { privateKey: string, publicKey: string }

export const RUN_DIR = '/run/wireguard'

function wgPath (): string {
  const p = which('wg')
  if (p == null) throw new WireguardUnavailableError('`wg` not found (install wireguard-tools: apt-get install -y wireguard-tools)')
  return p
}

/** `wg` inside a namespace (the kernel backend answers netlink there only). */
async function wg (netns: string | null, args: string[], opts: RunOptions = {}): Promise<string> {
  if (netns == null) return await run(wgPath(), args, opts)
  return await ip(['netns', 'exec', netns, wgPath(), ...args], opts)
}

/** A new keypair from `wg genkey` / `wg pubkey`, through stdout and stdin only. */
export async function generateKeypair (): Promise<Keypair> {
  const privateKey = (await run(wgPath(), ['genkey'])).trim()
  return { privateKey, publicKey: await publicKeyOf(privateKey) }
}

export async function publicKeyOf (privateKey: string): Promise<string> {
  const publicKey = (await run(wgPath(), ['pubkey'], { input: privateKey + '\n' })).trim()
  if (!isValidKey(publicKey)) throw new WireguardError(`wg pubkey gave no key: ${JSON.stringify(publicKey)}`)
  return publicKey
}

/**
 * The node's keypair, kept in `dir`/wireguard.key (mode 0600, private key only; the
 * public key is derived). Made on first use; a file that holds no key is an error
 * naming the file, never silently replaced (peers know the old public key).
 */
export async function loadOrCreateKeypair (dir: string): Promise<Keypair> {
  const file = join(dir, 'wireguard.key')
  let text: string | null = null
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (text != null) {
    const privateKey = text.trim()
    if (!isValidKey(privateKey)) throw new WireguardError(`${file} holds no WireGuard private key (expected 44 base64 characters); remove it to make a new one`)
    if (((await stat(file)).mode & 0o077) !== 0) await chmod(file, 0o600)
    return { privateKey, publicKey: await publicKeyOf(privateKey) }
  }
  const kp = await generateKeypair()
  await mkdir(dir, { recursive: true })
  await writeFileDurable(file, kp.privateKey + '\n', { mode: 0o600 })
  return kp
}

/** Names the wireguard-go to run instead of the one on PATH; "none" (or empty): there is none. */
export const WIREGUARD_GO_ENV = 'VGRID_WIREGUARD_GO'

/**
 * The wireguard-go to run, or null with why there is none. Looked up at each use, so
 * one removed (or installed) while the agent runs counts at the next bring-up. The
 * variable is the only way to make it unfindable: which() also looks in /usr/bin.
 */
export function findWireguardGo (): { path: string } | { path: null, why: string } {
  const named = process.env[WIREGUARD_GO_ENV]
  if (named == null) {
    const path = which('wireguard-go')
    return path != null ? { path } : { path: null, why: 'install wireguard-go' }
  }
  if (named === '' || named === 'none') return { path: null, why: `${WIREGUARD_GO_ENV}=${named === '' ? '""' : named}` }
  try {
    accessSync(named, constants.X_OK)
    return { path: named }
  } catch (err) {
    return { path: null, why: `${WIREGUARD_GO_ENV}=${named}: ${(err as NodeJS.ErrnoException).code ?? 'not executable'}` }
  }
}

/**
 * Which backend works in `netns` (null: this namespace): the kernel module if a
 * probe interface can be made, else wireguard-go if installed. Throws
 * WireguardUnavailableError saying what is missing.
 */
export async function probeBackend (netns: string | null, opts: { probeName?: string, wireguardGo?: string | null } = {}): Promise<Backend> {
  // never vgp*/vgt*: the link rules take those for VM interfaces
  const probeName = opts.probeName ?? `vgwprobe${process.pid % 10_000_000}`
  const go = opts.wireguardGo === undefined ? findWireguardGo() : opts.wireguardGo == null ? { path: null, why: 'install wireguard-go' } : { path: opts.wireguardGo }
  const nsArgs = netns == null ? [] : ['-n', netns]
  let kernelError = ''
  try {
    await ip([...nsArgs, 'link', 'add', probeName, 'type', 'wireguard'])
    await ip([...nsArgs, 'link', 'del', probeName], { allowFail: true })
    return 'kernel'
  } catch (err) {
    kernelError = (err as Error).message.split(': ').pop() ?? ''
  }
  wgPath()
  if (go.path != null) return 'userspace'
  throw new WireguardUnavailableError(`WireGuard cannot start: no kernel module (ip link add type wireguard: ${kernelError.trim() || 'failed'}) and no wireguard-go (${go.why})`)
}

export interface CreateOptions {
  name: string
  /** namespace to make the interface in; null for the current one */
  netns: string | null
  privateKey: string
  listenPort: number
  /** addresses (CIDR) to put on the interface, e.g. the node's overlay address */
  addresses?: string[]
  mtu?: number
  backend?: Backend
}

/** One WireGuard interface, made by create() and removed by destroy(). */
export class WgInterface {
  readonly name: string
  readonly netns: string | null
  readonly backend: Backend
  private readonly proc: ChildProcess | null
  /** resolves when wireguard-go exits (never, for the kernel backend) */
  readonly exited: Promise<void>

  private constructor (name: string, netns: string | null, backend: Backend, proc: ChildProcess | null) {
    this.name = name
    this.netns = netns
    this.backend = backend
    this.proc = proc
    this.exited = proc == null
      ? new Promise(() => {})
      : proc.exitCode != null ? Promise.resolve() : new Promise(resolve => { proc.once('exit', () => resolve()) })
  }

  /** PID of wireguard-go (userspace backend only). */
  get pid (): number | undefined { return this.proc?.pid }
  /** false once wireguard-go has exited (the interface is gone with it) */
  get alive (): boolean { return this.proc == null || (this.proc.exitCode == null && this.proc.signalCode == null) }
  get socketPath (): string { return join(RUN_DIR, `${this.name}.sock`) }

  static async create (o: CreateOptions): Promise<WgInterface> {
    if (o.name.length > 15 || !/^[A-Za-z0-9_-]+$/.test(o.name)) throw new WireguardError(`bad interface name ${JSON.stringify(o.name)} (1-15 of A-Za-z0-9_-)`)
    if (!isValidKey(o.privateKey)) throw new WireguardError('private key is not a WireGuard key')
    const backend = o.backend ?? await probeBackend(o.netns)
    const nsArgs = o.netns == null ? [] : ['-n', o.netns]
    await removeLegacy(o.name, o.netns)
    let proc: ChildProcess | null = null
    if (backend === 'kernel') {
      // one left by a run of ours that was killed: made again from scratch
      await ip([...nsArgs, 'link', 'del', o.name], { allowFail: true })
      await ip([...nsArgs, 'link', 'add', o.name, 'type', 'wireguard'])
    } else {
      proc = await startUserspace(o.name, o.netns)
    }
    const iface = new WgInterface(o.name, o.netns, backend, proc)
    try {
      await iface.addConf(renderConfig({ privateKey: o.privateKey, listenPort: o.listenPort }))
      if (o.mtu != null) await ip([...nsArgs, 'link', 'set', o.name, 'mtu', String(o.mtu)])
      for (const a of o.addresses ?? []) await ip([...nsArgs, 'addr', 'add', a, 'dev', o.name])
      await ip([...nsArgs, 'link', 'set', o.name, 'up'])
    } catch (err) {
      await iface.destroy()
      throw err
    }
    return iface
  }

  /** Applies wg(8) config text through stdin (private keys never reach argv). */
  async addConf (text: string): Promise<void> {
    // Node's stdio "pipes" are socketpairs, which /dev/stdin cannot open (ENXIO):
    // `cat` turns ours into a real pipe for wg to read
    const sh = which('sh') ?? '/bin/sh'
    const args = ['-c', 'cat | "$0" addconf "$1" /dev/stdin', wgPath(), this.name]
    if (this.netns == null) await run(sh, args, { input: text })
    else await ip(['netns', 'exec', this.netns, sh, ...args], { input: text })
  }

  /** Adds a peer or updates it; its allowed IPs are replaced by `p.allowedIps`. */
  async setPeer (p: PeerConfig): Promise<void> {
    if (!isValidKey(p.publicKey)) throw new WireguardError(`peer key ${JSON.stringify(p.publicKey)} is not a WireGuard key`)
    if (p.endpoint != null && !isValidEndpoint(p.endpoint)) throw new WireguardError(`peer endpoint ${JSON.stringify(p.endpoint)} is not host:port`)
    const args = ['set', this.name, 'peer', p.publicKey, 'allowed-ips', p.allowedIps.join(',')]
    if (p.endpoint != null) args.push('endpoint', p.endpoint)
    args.push('persistent-keepalive', (p.persistentKeepalive ?? 0) > 0 ? String(p.persistentKeepalive) : 'off')
    await wg(this.netns, args)
  }

  async removePeer (publicKey: string): Promise<void> {
    if (!isValidKey(publicKey)) throw new WireguardError(`peer key ${JSON.stringify(publicKey)} is not a WireGuard key`)
    await wg(this.netns, ['set', this.name, 'peer', publicKey, 'remove'])
  }

  async show (): Promise<InterfaceState> {
    return parseDump(await wg(this.netns, ['show', this.name, 'dump']), this.name)
  }

  /**
   * After this host's address changed: sets every peer's endpoint to itself again.
   * That drops the cached source address wireguard-go keeps sending from (it gets
   * ENETUNREACH until its 15 s handshake timer fires); the next packet goes out from
   * the new address and the other side roams to it. Returns the peers touched.
   */
  async refreshEndpoints (): Promise<string[]> {
    const st = await this.show()
    const done: string[] = []
    for (const p of st.peers) {
      if (p.endpoint == null) continue
      await wg(this.netns, ['set', this.name, 'peer', p.publicKey, 'endpoint', p.endpoint])
      done.push(p.publicKey)
    }
    return done
  }

  /**
   * Removes the interface; wireguard-go exits when its device goes, and is
   * signalled (by PID) if it does not. Leaves no link, process or socket.
   */
  async destroy (): Promise<void> {
    const nsArgs = this.netns == null ? [] : ['-n', this.netns]
    await ip([...nsArgs, 'link', 'del', this.name], { allowFail: true })
    if (this.proc?.pid != null) {
      const pid = this.proc.pid
      const gone = await Promise.race([this.exited.then(() => true), sleep(2000).then(() => false)])
      if (!gone && isAlive(pid)) {
        this.proc.kill('SIGTERM')
        const gone2 = await Promise.race([this.exited.then(() => true), sleep(2000).then(() => false)])
        if (!gone2) this.proc.kill('SIGKILL')
        await this.exited
      }
    }
    // wireguard-go removes its socket on a clean exit; one left by a killed process is ours
    if (this.backend === 'userspace' && existsSync(this.socketPath)) await unlink(this.socketPath).catch(() => {})
  }
}

/**
 * This node's interface under the name earlier versions gave it (isLegacyNameOf), left
 * by an agent killed before an upgrade: it holds the listen port and the node's
 * address, so it goes (its wireguard-go, if any, exits with its device).
 */
async function removeLegacy (name: string, netns: string | null): Promise<void> {
  const nsArgs = netns == null ? [] : ['-n', netns]
  const links = await ip([...nsArgs, '-o', 'link', 'show'], { allowFail: true })
  for (const m of links.matchAll(/^\d+: ([^:@\s]+)/gm)) {
    const old = m[1]!
    if (!isLegacyNameOf(old, name)) continue
    await ip([...nsArgs, 'link', 'del', old], { allowFail: true })
    const sock = join(RUN_DIR, `${old}.sock`)
    const until = Date.now() + 3000
    while (existsSync(sock) && Date.now() < until) await sleep(20)
  }
}

/** what removeLeftoverInterfaces removed: the interface, and the wireguard-go processes that held it (by PID) */
export interface RemovedInterface { name: string, pids: number[], killed: boolean }

/**
 * Removes the LCM WireGuard interfaces in `netns` other than `own` (leftovers.ts): an
 * earlier agent's of another identity, still held by its wireguard-go (which outlives
 * a SIGKILLed agent), with the listen port and routes in the overlay range. Its
 * wireguard-go is found by the control socket it listens on; removing the device makes
 * it exit, and one still there after 2 s is signalled by PID. The agent's own name is
 * left to create(), which replaces it as after a restart of the same identity.
 */
export async function removeLeftoverInterfaces (own: string, netns: string | null): Promise<RemovedInterface[]> {
  const nsArgs = netns == null ? [] : ['-n', netns]
  const json = await ip([...nsArgs, '-j', '-d', 'link', 'show'])
  let links: LinkEntry[]
  try {
    links = JSON.parse(json) as LinkEntry[]
  } catch (err) {
    throw new WireguardError(`ip -j -d link show gave no JSON: ${(err as Error).message}`)
  }
  const removed: RemovedInterface[] = []
  for (const name of leftoverInterfaces(links, own)) {
    // found before the device goes: a clean exit removes the socket
    const pids = await socketHolders(name, netns)
    await ip([...nsArgs, 'link', 'del', name], { allowFail: true })
    let killed = false
    const sock = join(RUN_DIR, `${name}.sock`)
    // gone: its holders exited and nothing answers on the socket (a holder not found stays unseen)
    const held = async (): Promise<boolean> => pids.some(isAlive) || (existsSync(sock) && await socketAnswers(sock))
    for (const [sig, waitMs] of [[null, 2000], ['SIGTERM', 1000], ['SIGKILL', 1000]] as const) {
      if (sig != null) {
        for (const pid of pids) if (isAlive(pid)) { try { process.kill(pid, sig); killed = true } catch {} }
      }
      const until = Date.now() + waitMs
      while (await held() && Date.now() < until) await sleep(20)
      if (!await held()) break
    }
    // one killed (or dead of SIGPIPE on its last words, its agent gone) leaves its socket behind
    if (existsSync(sock) && !await socketAnswers(sock)) await unlink(sock).catch(() => {})
    removed.push({ name, pids, killed })
  }
  // the sockets of wireguard-go processes that ended with their killed agents (setpriv
  // --pdeathsig), their interfaces gone with them: one nobody answers on is stale, in
  // whatever namespace it was (the run dir is the machine's), and goes
  // (rv49: not one whose listener is only busy, nor one caught between its wireguard-go's
  // bind and listen: refused, no listener there, twice, 200 ms apart)
  for (const name of lcmSocketNames(await readdir(RUN_DIR).catch(() => []), own)) {
    const sock = join(RUN_DIR, `${name}.sock`)
    if (await connectError(sock) !== 'ECONNREFUSED') continue
    await sleep(200)
    if (await connectError(sock) === 'ECONNREFUSED') await unlink(sock).catch(() => {})
  }
  return removed
}

/** the error a connect to a unix socket gets (undefined: it was taken) */
async function connectError (path: string): Promise<string | undefined> {
  return await new Promise(resolve => {
    const c = createConnection({ path })
    c.once('connect', () => { c.destroy(); resolve(undefined) })
    c.once('error', (err: NodeJS.ErrnoException) => { resolve(err.code ?? err.message) })
  })
}

/** The PIDs holding the listening control socket of `name` (wireguard-go's), from /proc. */
async function socketHolders (name: string, netns: string | null): Promise<number[]> {
  // unix sockets are listed per network namespace
  const text = netns == null
    ? await readFile('/proc/net/unix', 'utf8').catch(() => '')
    : await ip(['netns', 'exec', netns, which('cat') ?? 'cat', '/proc/net/unix'], { allowFail: true })
  return await socketHolderPids(listenerInodes(text, name))
}

/** Starts wireguard-go in the foreground inside `netns` and waits for its socket. */
async function startUserspace (name: string, netns: string | null): Promise<ChildProcess> {
  const go = findWireguardGo()
  if (go.path == null) throw new WireguardUnavailableError(`WireGuard cannot start: no wireguard-go (${go.why})`)
  const bin = go.path
  const sock = join(RUN_DIR, `${name}.sock`)
  if (existsSync(sock)) await clearLeftover(name, netns, sock)
  // `ip netns exec` execs, so the child's PID is wireguard-go's own
  const inNs = netns == null ? [bin, '-f', name] : [which('ip') ?? 'ip', 'netns', 'exec', netns, bin, '-f', name]
  // `nice` execs too, and every thread wireguard-go makes inherits its niceness. Its
  // -n is relative to the agent's own; GNU nice runs the command at the old niceness
  // where it may not raise it (no CAP_SYS_NICE)
  const nice = which('nice')
  const by = DATA_PLANE_NICE - getPriority()
  const niced = nice == null || by === 0 ? inNs : [nice, '-n', String(by), ...inNs]
  // ended by the kernel with its agent, however that ends (SIGKILL included): a killed
  // agent that never came back left it running for good, holding the port and the
  // overlay's routes (bb45); one restarted replaces it anyway. setpriv, nice and
  // `ip netns exec` exec in turn, and the parent-death signal survives an exec
  const [cmd, ...args] = tiedArgv(niced)
  const proc = spawn(cmd!, args, {
    // a session of its own, so that where the kernel groups CPU time by session
    // (autogroup) its priority below is its own, not shared with the agent's
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    // it refuses to run next to a kernel module without this; we probed already
    env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1', LOG_LEVEL: 'error' }
  })
  // a spawn that fails (EMFILE, no binary) says so in an 'error' event: unheard, it ends the agent
  let failed: Error | undefined
  proc.on('error', err => { failed = err })
  let out = ''
  proc.stdout?.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-2000) })
  proc.stderr?.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-2000) })
  const until = Date.now() + 5000
  while (Date.now() < until) {
    if (failed != null) throw new WireguardError(`wireguard-go ${name} could not be started: ${failed.message}`)
    if (proc.exitCode != null || proc.signalCode != null) {
      throw new WireguardError(`wireguard-go ${name} exited (${proc.exitCode ?? proc.signalCode}): ${out.trim().split('\n').slice(-3).join(' ')}`)
    }
    if (existsSync(sock)) {
      if (proc.pid != null) raiseAutogroup(proc.pid)
      return proc
    }
    await sleep(20)
  }
  proc.kill('SIGKILL')
  throw new WireguardError(`wireguard-go ${name}: no control socket at ${sock} after 5 s`)
}

/**
 * wireguard-go is the data plane of every VM's links on this node: at the VMs' own
 * priority, busy VMs starve it and every VM's traffic slows (the kernel module's work
 * runs in softirq and kernel workers, ahead of any VM). Measured on a 2-core machine
 * with iperf3 through it (bench/lcm.ts, a bare tunnel): 1.01-1.14x at nice -10. Set
 * twice: its niceness (started under `nice`), and, where the kernel groups CPU time by
 * session (sched_autogroup), its session's. Best effort: without CAP_SYS_NICE it runs
 * at the default.
 */
export const DATA_PLANE_NICE = -10
function raiseAutogroup (pid: number): void {
  try { writeFileSync(`/proc/${pid}/autogroup`, String(DATA_PLANE_NICE)) } catch {}
}

async function socketAnswers (path: string): Promise<boolean> {
  return await connectError(path) === undefined
}

/**
 * A control socket for `name` exists already. If the interface is in our namespace it
 * is a leftover of ours (an agent killed before it could clean up): removing the
 * device makes its wireguard-go exit. A socket nobody answers is stale and goes. A
 * live one elsewhere means another namespace of this machine uses the name.
 */
async function clearLeftover (name: string, netns: string | null, sock: string): Promise<void> {
  const nsArgs = netns == null ? [] : ['-n', netns]
  const here = (await ip([...nsArgs, 'link', 'show', name], { allowFail: true })).includes(name)
  if (here) {
    await ip([...nsArgs, 'link', 'del', name], { allowFail: true })
    // until its wireguard-go has gone: the socket removed, or left behind unanswered (one
    // whose agent was SIGKILLed dies without removing it: waiting for the file alone
    // held every restart after a crash 3 s, past most of its watchdog's timeout)
    const until = Date.now() + 3000
    while (existsSync(sock) && Date.now() < until && await socketAnswers(sock)) await sleep(20)
  }
  if (!existsSync(sock)) return
  if (await socketAnswers(sock)) throw new WireguardError(`${sock} exists: interface name ${name} is in use on this machine (every namespace shares ${RUN_DIR})`)
  await unlink(sock).catch(() => {})
}
