// Agent configuration: defaults < JSON config file (--config) < command-line flags.
// Every bad value is reported with the flag or key that carried it.
import { constants } from 'node:fs'
import { isIP } from 'node:net'
import { open } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { Type, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { listenAddressProblem, multiaddrProblem } from '../protocol/address-check.ts'
import { parseCapacity, type CapacityOverride } from './resources.ts'
import { DEFAULT_MEMBERSHIP, validateMembershipConfig, type MembershipConfig } from '../protocol/membership.ts'
import { DEFAULT_TIMING, type MembershipTiming } from '../protocol/membership-service.ts'
import { tuningFromConfig, type GvsTuning } from './gvs/config.ts'
import { durationMs, MAX_TIMER_MS } from './durations.ts'
import { dataDirPlaceProblem } from './data-dir.ts'
import { FENCE_TIMEOUT_MS, MAX_FENCE_TIMEOUT_MS, MAX_RESTART_GRACE_MS, MIN_FENCE_TIMEOUT_MS, RESTART_GRACE_MS } from './dvmm/timing.ts'

export const DEFAULT_API = '127.0.0.1:7401'
export const DEFAULT_LISTEN = '/ip4/0.0.0.0/tcp/7400'
export const DEFAULT_DATA_DIR = '/var/lib/vgrid'
export const DEFAULT_WIREGUARD_PORT = 51820
/** the API's unix socket for the default data dir; another data dir keeps its own inside it */
/** the shortest heartbeat and advert intervals taken: every member sends them to the whole grid */
export const MIN_HEARTBEAT_MS = 100
export const MIN_ADVERT_MS = 1000
export const DEFAULT_API_SOCKET = '/run/vgrid/api.sock'

export function defaultApiSocket (dataDir: string): string {
  return dataDir === DEFAULT_DATA_DIR ? DEFAULT_API_SOCKET : join(dataDir, 'api.sock')
}

export interface AgentConfig {
  dataDir: string
  listen: string[]
  api: { host: string, port: number }
  /** the API's unix socket (mode 0660, group vgrid), or null for none */
  apiSocket: string | null
  join: string[]
  keyFile?: string
  token?: string
  name: string
  mdns: boolean
  capacity: CapacityOverride
  labels: Record<string, string>
  membership: MembershipConfig
  timing: MembershipTiming
  /** in-process transport for many-agents-in-one-process tests and benchmarks */
  transport: 'tcp' | 'memory'
  /** the WireGuard overlay and connection rules (LCM); off for agents sharing one network namespace (loopback tests, benchmarks) */
  overlay: boolean
  /** UDP port of the WireGuard interface */
  wireguardPort: number
  /** the volume store's repair and scrub settings (the environment's VGRID_GVS_* go over these) */
  gvs: GvsTuning
  /**
   * DVMM's fence timeout: a node that cannot see a majority this long kills its VMs, its
   * watchdog fires after 3/5 of it, an agent restarted within it adopts its VMs, and a
   * dead holder's VMs move after it (plus a margin). Set the same on every node.
   */
  fenceTimeoutMs: number
  /**
   * How long this node's VMs run on without their agent while it restarts (SIGTERM),
   * when every member confirms (node/dvmm/restart-grace.ts); 0: off (the watchdog's
   * usual timeout). Others then wait 5/3 of it before taking them over.
   */
  restartGraceMs: number
}

export class ConfigError extends Error {
  override name = 'ConfigError'
}

const FileSchema = Type.Object({
  dataDir: Type.Optional(Type.String({ minLength: 1 })),
  listen: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())])),
  api: Type.Optional(Type.String()),
  apiSocket: Type.Optional(Type.String({ minLength: 1 })),
  join: Type.Optional(Type.Array(Type.String())),
  key: Type.Optional(Type.String()),
  token: Type.Optional(Type.String()),
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  mdns: Type.Optional(Type.Boolean()),
  overlay: Type.Optional(Type.Boolean()),
  wireguardPort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
  capacity: Type.Optional(Type.String()),
  labels: Type.Optional(Type.Record(Type.String(), Type.String())),
  advertInterval: Type.Optional(Type.Union([Type.String(), Type.Number()])),
  heartbeatInterval: Type.Optional(Type.Union([Type.String(), Type.Number()])),
  suspectAfter: Type.Optional(Type.Union([Type.String(), Type.Number()])),
  deadAfter: Type.Optional(Type.Union([Type.String(), Type.Number()])),
  silenceAfter: Type.Optional(Type.Union([Type.String(), Type.Number()])),
  forgetAfter: Type.Optional(Type.Union([Type.String(), Type.Number()])),
  fenceTimeout: Type.Optional(Type.Union([Type.String(), Type.Number()])),
  restartGrace: Type.Optional(Type.Union([Type.String(), Type.Number()])),
  gvs: Type.Optional(Type.Object({
    repairRate: Type.Optional(Type.Union([Type.String(), Type.Number()])),
    repairDelay: Type.Optional(Type.Union([Type.String(), Type.Number()])),
    scrubInterval: Type.Optional(Type.Union([Type.String(), Type.Number()])),
    scrubRate: Type.Optional(Type.Union([Type.String(), Type.Number()])),
    retireQuiet: Type.Optional(Type.Union([Type.String(), Type.Number()])),
    localCache: Type.Optional(Type.Union([Type.String(), Type.Number()]))
  }, { additionalProperties: false }))
}, { additionalProperties: false })

export type ConfigFile = Static<typeof FileSchema>
const fileCheck = TypeCompiler.Compile(FileSchema)

/** What the command line said; undefined means "not given". */
export type ConfigFlags = ConfigFile & { config?: string, transport?: 'tcp' | 'memory' }

/**
 * "250ms", "3s", "2m", "1h" or a number of milliseconds. One a timer waits for in one
 * piece is at most MAX_TIMER_MS; `maxMs` Infinity for one only compared with times.
 */
export function parseDuration (v: string | number, what: string, maxMs = MAX_TIMER_MS, zero?: 'zero-is-off'): number {
  // 0 turns some settings off (--restart-grace 0): "0", "0s", 0
  if (zero != null && (v === 0 || (typeof v === 'string' && durationMs(v) === 0))) return 0
  let n: number
  if (typeof v === 'number') {
    if (!(Number.isFinite(v) && v > 0)) throw new ConfigError(`${what}: must be a positive duration, got ${v}`)
    n = v
  } else {
    const ms = durationMs(v)
    if (ms == null) throw new ConfigError(`${what}: "${v}" is not a duration (use e.g. 500ms, 3s, 10m)`)
    n = ms
    if (!(n > 0)) throw new ConfigError(`${what}: must be greater than zero`)
  }
  if (n > maxMs) throw new ConfigError(`${what}: must be at most 24 days (596h), got ${typeof v === 'number' ? `${v} ms` : `"${v}"`}`)
  return n
}

/** "127.0.0.1:7401", "[::1]:7401", ":7401" -> host and port. */
export function parseHostPort (v: string, what: string): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(v.trim())
  const port = m == null ? NaN : Number(m[3])
  if (m != null && port > 65535) throw new ConfigError(`${what}: "${v}": port ${port} is out of range (0-65535)`)
  if (m == null || !(port >= 0)) throw new ConfigError(`${what}: "${v}" is not host:port`)
  return { host: m[1] ?? (m[2] === '' ? '127.0.0.1' : m[2]!), port }
}

/**
 * host:port for the agent's API to listen on: the host an IP address (or localhost),
 * checked before anything starts (999.1.1.1 started every service, then failed with
 * the resolver's raw ENOTFOUND)
 */
export function listenHostPort (v: string, what: string): { host: string, port: number } {
  const hp = parseHostPort(v, what)
  if (isIP(hp.host) === 0 && hp.host !== 'localhost') throw new ConfigError(`${what}: "${hp.host}" is not an IP address to listen on (e.g. 127.0.0.1:7401)`)
  return hp
}

function checkListen (v: string): string {
  const problem = multiaddrProblem(v) == null ? listenAddressProblem(v) : null
  if (problem != null) throw new ConfigError(`--listen: "${v}" is not an address to listen on: ${problem}`)
  return checkMultiaddr(v, '--listen')
}

function checkMultiaddr (v: string, what: string): string {
  const problem = multiaddrProblem(v)
  if (problem != null) throw new ConfigError(`${what}: "${v}" is not a multiaddr (e.g. /ip4/10.0.0.2/tcp/7400): ${problem}`)
  return v
}

/** a config file is a few hundred bytes; more than this is not one (--config /dev/zero read until memory ran out) */
export const MAX_CONFIG_BYTES = 1024 * 1024

/**
 * The text of a config file: a regular file of at most MAX_CONFIG_BYTES, read no
 * further than that (a /proc file says size 0 whatever it holds).
 */
async function readConfigText (path: string): Promise<string> {
  // non-blocking: a named pipe with no writer would hang the open (it is refused below)
  const fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK)
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw new ConfigError(`config file ${path}: not a regular file (${st.isDirectory() ? 'a directory' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isFIFO() ? 'a pipe' : st.isSocket() ? 'a socket' : 'not a file'}): give the JSON file`)
    const tooBig = (): ConfigError => new ConfigError(`config file ${path}: larger than ${MAX_CONFIG_BYTES / 1024 / 1024} MiB, which no vgrid config file is: is it the right file?`)
    if (st.size > MAX_CONFIG_BYTES) throw tooBig()
    const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1)
    let n = 0
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null)
      if (bytesRead === 0) break
      n += bytesRead
      if (n > MAX_CONFIG_BYTES) throw tooBig()
    }
    return buf.subarray(0, n).toString('utf8')
  } finally {
    await fh.close()
  }
}

export async function readConfigFile (path: string): Promise<ConfigFile> {
  let text: string
  try {
    text = await readConfigText(path)
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw new ConfigError(`config file ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (err as Error).message}`)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`config file ${path}: not valid JSON (${(err as Error).message})`)
  }
  if (!fileCheck.Check(value)) {
    const e = fileCheck.Errors(value).First()
    const where = e?.path === '' || e == null ? '' : ` at "${e.path.slice(1).replace(/\//g, '.')}"`
    throw new ConfigError(`config file ${path}${where}: ${sayTypeError(e?.message, e?.path ?? '', e?.value)}`)
  }
  return value
}

/** Merges file and flags over the defaults and checks every value. */
export async function resolveConfig (flags: ConfigFlags): Promise<AgentConfig> {
  const file = flags.config != null ? await readConfigFile(flags.config) : {}
  const pick = <K extends keyof ConfigFile>(k: K): ConfigFile[K] => flags[k] ?? file[k]
  const listenRaw = pick('listen') ?? DEFAULT_LISTEN
  const listen = (Array.isArray(listenRaw) ? listenRaw : [listenRaw]).map(checkListen)
  // an agent that listens nowhere can be dialled by no member (bb35: "listen": [] started so)
  if (listen.length === 0) throw new ConfigError('--listen: no address given: the agent must listen somewhere for the other members to reach it (default /ip4/0.0.0.0/tcp/7400)')
  const join = [...(file.join ?? []), ...(flags.join ?? [])].map(j => checkMultiaddr(j, '--join'))
  let capacity: CapacityOverride = {}
  const capText = pick('capacity')
  if (capText != null) {
    try {
      capacity = parseCapacity(capText)
    } catch (err) {
      const msg = (err as Error).message
      throw new ConfigError(msg.startsWith('--capacity') ? msg : `--capacity ${JSON.stringify(capText)}: ${msg}`)
    }
  }
  const membership: MembershipConfig = {
    suspectAfterMs: parseDuration(pick('suspectAfter') ?? DEFAULT_MEMBERSHIP.suspectAfterMs, '--suspect-after'),
    deadAfterMs: parseDuration(pick('deadAfter') ?? DEFAULT_MEMBERSHIP.deadAfterMs, '--dead-after'),
    silenceAfterMs: parseDuration(pick('silenceAfter') ?? DEFAULT_MEMBERSHIP.silenceAfterMs, '--silence-after'),
    // compared with times, never a timer's delay: a month is fine
    forgetAfterMs: parseDuration(pick('forgetAfter') ?? DEFAULT_MEMBERSHIP.forgetAfterMs, '--forget-after', Infinity)
  }
  const bad = validateMembershipConfig(membership)
  if (bad != null) throw new ConfigError(`membership timeouts: ${bad.replace(/(\w+)Ms\b/g, (_, k: string) => '--' + k.replace(/[A-Z]/g, c => '-' + c.toLowerCase()))}`)
  const labels = { ...file.labels, ...flags.labels }
  for (const [k, v] of Object.entries(labels)) {
    if (!/^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/.test(k)) throw new ConfigError(`--label: "${k}" is not a label key (1-63 letters, digits, ".", "_", "/", "-")`)
    if (v.length > 256) throw new ConfigError(`--label ${k}: the value is longer than 256 characters`)
  }
  const name = pick('name') ?? hostname()
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(name)) throw new ConfigError(`--name: "${name}" may only hold letters, digits, ".", "_" and "-"`)
  const timing: MembershipTiming = {
    ...DEFAULT_TIMING,
    advertRefreshMs: parseDuration(pick('advertInterval') ?? DEFAULT_TIMING.advertRefreshMs, '--advert-interval'),
    heartbeatIntervalMs: parseDuration(pick('heartbeatInterval') ?? DEFAULT_TIMING.heartbeatIntervalMs, '--heartbeat-interval')
  }
  // a number in a config file is milliseconds: "advertInterval": 10, meant as seconds,
  // would gossip a signed advert to the whole grid every 10 ms
  if (timing.heartbeatIntervalMs < MIN_HEARTBEAT_MS) throw new ConfigError(`--heartbeat-interval: must be at least ${MIN_HEARTBEAT_MS} ms, got ${timing.heartbeatIntervalMs} ms (a number in the config file is milliseconds)`)
  if (timing.advertRefreshMs < MIN_ADVERT_MS) throw new ConfigError(`--advert-interval: must be at least ${MIN_ADVERT_MS / 1000} s, got ${timing.advertRefreshMs} ms (a number in the config file is milliseconds)`)
  // timings that contradict each other would make members flap forever
  if (membership.suspectAfterMs < 2 * timing.heartbeatIntervalMs) throw new ConfigError('--suspect-after must be at least twice --heartbeat-interval')
  if (membership.silenceAfterMs < 2 * timing.advertRefreshMs) throw new ConfigError('--silence-after must be at least twice --advert-interval')
  const fenceTimeoutMs = parseDuration(pick('fenceTimeout') ?? FENCE_TIMEOUT_MS, '--fence-timeout')
  if (fenceTimeoutMs < MIN_FENCE_TIMEOUT_MS || fenceTimeoutMs > MAX_FENCE_TIMEOUT_MS) {
    throw new ConfigError(`--fence-timeout: must be between ${MIN_FENCE_TIMEOUT_MS / 1000} s and ${MAX_FENCE_TIMEOUT_MS / 60_000} min, got ${fenceTimeoutMs} ms`)
  }
  // a dead node's advert (its fence timeout) must outlive the wait before its VMs move
  if (membership.forgetAfterMs <= fenceTimeoutMs + 2000) throw new ConfigError('--forget-after must be longer than --fence-timeout plus 2 s')
  const restartGraceMs = parseDuration(pick('restartGrace') ?? RESTART_GRACE_MS, '--restart-grace', MAX_TIMER_MS, 'zero-is-off')
  if (restartGraceMs !== 0 && (restartGraceMs < 1000 || restartGraceMs > MAX_RESTART_GRACE_MS)) {
    throw new ConfigError(`--restart-grace: must be 0 (off) or between 1 s and ${MAX_RESTART_GRACE_MS / 60_000} min, got ${restartGraceMs} ms`)
  }
  // absolute: VMs, their guards and the watchdog run in other directories and read paths under it
  const dataDirGiven = pick('dataDir') ?? DEFAULT_DATA_DIR
  // before anything makes it: on /proc, Node's recursive mkdir loops for ever ('' before it is resolved to the working directory)
  const place = dataDirPlaceProblem(dataDirGiven)
  if (place != null) throw new ConfigError(`--data-dir: ${place}`)
  const dataDir = resolve(dataDirGiven)
  const socketText = pick('apiSocket')
  const apiSocket = socketText === 'none' ? null : socketText ?? defaultApiSocket(dataDir)
  if (apiSocket != null && !apiSocket.startsWith('/')) throw new ConfigError(`--api-socket: "${apiSocket}" must be an absolute path (or "none")`)
  return {
    dataDir,
    listen,
    api: listenHostPort(pick('api') ?? DEFAULT_API, '--api'),
    apiSocket,
    join,
    keyFile: pick('key'),
    token: pick('token'),
    name,
    mdns: pick('mdns') ?? true,
    capacity,
    labels,
    membership,
    timing,
    transport: flags.transport ?? 'tcp',
    // agents that share one network namespace would fight over one port and one firewall
    overlay: pick('overlay') ?? (flags.transport !== 'memory'),
    wireguardPort: pick('wireguardPort') ?? DEFAULT_WIREGUARD_PORT,
    gvs: gvsTuning(file.gvs ?? {}),
    fenceTimeoutMs: Math.round(fenceTimeoutMs),
    restartGraceMs: Math.round(restartGraceMs)
  }
}

function gvsTuning (raw: Parameters<typeof tuningFromConfig>[0]): GvsTuning {
  try { return tuningFromConfig(raw) } catch (err) { throw new ConfigError((err as Error).message) }
}

/** what is wrong with a value of the config file, said for its key (bb35: the schema library's "Expected union value") */
function sayTypeError (message: string | undefined, path: string, value: unknown): string {
  const got = value === null ? 'null' : Array.isArray(value) ? 'a list' : typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)?.slice(0, 60) ?? ''}`.trim()
  if (message == null) return 'invalid'
  if (message.includes('Unexpected property')) return `${message} (unknown key)`
  if (path === '') return `must be a JSON object of settings, not ${got}`
  const key = path.split('/').filter(Boolean)[0]
  const wants: Record<string, string> = {
    listen: 'a multiaddr string, or a list of them',
    join: 'a list of multiaddr strings',
    labels: 'an object of string values',
    gvs: 'an object of volume store settings',
    mdns: 'true or false',
    overlay: 'true or false',
    wireguardPort: 'a whole number 1-65535'
  }
  const durations = ['advertInterval', 'heartbeatInterval', 'suspectAfter', 'deadAfter', 'silenceAfter', 'forgetAfter', 'fenceTimeout', 'restartGrace']
  const want = key == null ? undefined : path.startsWith('/gvs/') ? 'a number or a string (a rate, size or duration: "50M", "30s")' : wants[key] ?? (durations.includes(key) ? 'a duration ("3s", "10m") or a number of milliseconds' : undefined)
  return want == null ? `${message}, got ${got}` : `must be ${want}, not ${got}`
}
