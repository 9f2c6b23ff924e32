// Who may change the grid. Reading status is open; changing anything and reading the
// join token (it carries the cluster key) is for root and the `vgrid` group, or for
// a client that presents the API token kept in a root-only file of the data dir.
// - the unix socket (mode 0660, group vgrid): the kernel checks the file's mode at
//   connect(), so whoever got a connection is root or in the group (as Docker's
//   socket works);
// - loopback TCP: the caller's uid comes from the kernel's socket table
//   (/proc/net/tcp, tcp6), found by the connection's two ends, as identd does;
// - anything else: only the token.
import { readFileSync } from 'node:fs'
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { join } from 'node:path'
import { writeFileDurable } from '../durable-file.ts'
import type { Logger } from '../log.ts'
import { readSecretFile } from '../secret-file.ts'

export const API_TOKEN_FILE = 'api.token'
export const ADMIN_GROUP = 'vgrid'

export type Caller =
  | { via: 'unix' }
  | { via: 'tcp', uid: number | null, loopback: boolean }

export interface Endpoint { address: string, port: number }

export interface SocketEntry { local: Endpoint, remote: Endpoint, uid: number }

/** "0100007F:1CE9" (little-endian words, as the kernel prints them) -> 127.0.0.1:7401 */
export function decodeProcAddr (hex: string): Endpoint | null {
  const [a, p] = hex.split(':')
  if (a == null || p == null || !/^[0-9A-Fa-f]+$/.test(a) || !/^[0-9A-Fa-f]{4}$/.test(p)) return null
  const port = parseInt(p, 16)
  if (a.length === 8) return { address: wordBytes(a).join('.'), port }
  if (a.length !== 32) return null
  const bytes = (a.match(/.{8}/g) ?? []).flatMap(wordBytes)
  // an IPv4-mapped address, as a dual-stack server sees an IPv4 client
  if (bytes.slice(0, 10).every(b => b === 0) && bytes[10] === 255 && bytes[11] === 255) return { address: bytes.slice(12).join('.'), port }
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16))
  return { address: groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::'), port }
}

/** one 32-bit word as the kernel wrote it (host order, little-endian here) -> its 4 bytes in network order */
function wordBytes (w: string): number[] {
  const n = parseInt(w, 16)
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255]
}

/** The lines of /proc/net/tcp or tcp6 as entries (the header and odd lines skipped). */
export function parseProcNetTcp (text: string): SocketEntry[] {
  const out: SocketEntry[] = []
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 8) continue
    // a caller's end of a connection is established (01); the rest (TIME_WAIT above all:
    // a user looping connect and close leaves thousands, rv29) is no caller's
    if (f[3] !== '01') continue
    const local = decodeProcAddr(f[1]!)
    const remote = decodeProcAddr(f[2]!)
    const uid = Number(f[7])
    if (local != null && remote != null && Number.isInteger(uid)) out.push({ local, remote, uid })
  }
  return out
}

const plain = (a: string): string => a.startsWith('::ffff:') ? a.slice(7) : a
const same = (x: Endpoint, y: Endpoint): boolean => x.port === y.port && plain(x.address) === plain(y.address)

/** The uid owning the client end of a TCP connection made on this machine, or null. */
export function uidOfClient (entries: SocketEntry[], client: Endpoint, server: Endpoint): number | null {
  return entries.find(e => same(e.local, client) && same(e.remote, server))?.uid ?? null
}

/**
 * The socket table read once for many connections: a burst of N connections, each
 * asking once, read and scanned the table (N entries long) N times, so a local user
 * with a few hundred half-sent requests stalled every API request for seconds. A read
 * serves every connection accepted before it; connections accepted since wait for the
 * next read, which comes at most every `gapMs`, and share it.
 */
export class SocketTableCache {
  private byEnds = new Map<string, number>()
  private readAt = -Infinity
  private next: Promise<void> | null = null
  private readonly read: () => SocketEntry[]
  private readonly now: () => number
  private readonly gapMs: number

  constructor (read: () => SocketEntry[] = readSocketTable, now: () => number = () => performance.now(), gapMs = 20) {
    this.read = read
    this.now = now
    this.gapMs = gapMs
  }

  /** `acceptedAt` (this clock): when the connection was accepted; a table read before it cannot hold it */
  async uidOfClient (client: Endpoint, server: Endpoint, acceptedAt: number): Promise<number | null> {
    if (this.readAt < acceptedAt) await this.fresh()
    return this.byEnds.get(endsKey(client, server)) ?? null
  }

  private async fresh (): Promise<void> {
    this.next ??= new Promise<void>(resolve => {
      setTimeout(() => {
        this.readAt = this.now()
        this.byEnds = new Map(this.read().map(e => [endsKey(e.local, e.remote), e.uid]))
        this.next = null
        resolve()
      }, Math.max(0, this.readAt + this.gapMs - this.now()))
    })
    await this.next
  }
}

const endsKey = (local: Endpoint, remote: Endpoint): string => `${plain(local.address)}:${local.port}>${plain(remote.address)}:${remote.port}`

export function readSocketTable (): SocketEntry[] {
  const out: SocketEntry[] = []
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    try { for (const e of parseProcNetTcp(readFileSync(f, 'utf8'))) out.push(e) } catch {}
  }
  return out
}

export const isLoopback = (ip: string): boolean => ip === '::1' || ip.startsWith('127.') || ip.startsWith('::ffff:127.')

/** Whether a uid may change the grid: root, or a member of the vgrid group (primary or listed). */
export function uidIsAdmin (uid: number, files: { passwd: string, group: string }): boolean {
  if (uid === 0) return true
  const group = files.group.split('\n').map(l => l.split(':')).find(f => f[0] === ADMIN_GROUP)
  if (group == null) return false
  const gid = Number(group[2])
  const user = files.passwd.split('\n').map(l => l.split(':')).find(f => Number(f[2]) === uid)
  if (user == null) return false
  return Number(user[3]) === gid || (group[3] ?? '').split(',').includes(user[0]!)
}

/** What a caller lacks to change the grid, or null if it may (`nameOf`: a uid's user name, if it has one). */
export function denial (caller: Caller, tokenOk: boolean, isAdmin: (uid: number) => boolean, nameOf: (uid: number) => string | undefined = () => undefined): string | null {
  if (tokenOk || caller.via === 'unix') return null
  if (caller.uid != null && isAdmin(caller.uid)) return null
  const name = caller.uid == null ? undefined : nameOf(caller.uid)
  if (caller.uid != null) return `user ${name != null ? `${name} (uid ${caller.uid})` : `uid ${caller.uid}`} is neither root nor in the "${ADMIN_GROUP}" group; use the agent's unix socket as a member of that group, or present the API token (from the root-only file ${API_TOKEN_FILE} in the data dir: the vgrid CLI takes it in VGRID_API_TOKEN, other clients as Authorization: Bearer)`
  return `this connection's user is unknown (not from this machine); present the API token (from the root-only file ${API_TOKEN_FILE} in the data dir: the vgrid CLI takes it in VGRID_API_TOKEN, other clients as Authorization: Bearer)`
}

export function tokenMatches (presented: string | undefined, token: string): boolean {
  if (presented == null) return false
  const m = /^Bearer\s+(\S+)$/i.exec(presented.trim())
  if (m == null) return false
  const a = Buffer.from(m[1]!)
  const b = Buffer.from(token)
  return a.length === b.length && timingSafeEqual(a, b)
}

/** The data dir's API token, made on first start (0600, root's); a damaged one is replaced, saying so. */
export async function loadOrCreateApiToken (dataDir: string, log?: Logger): Promise<string> {
  const path = join(dataDir, API_TOKEN_FILE)
  const old = await readSecretFile(path, 'API token file', log)
  if (old != null) {
    const t = old.toString('utf8').trim()
    if (/^[0-9a-f]{64}$/.test(t)) return t
    log?.warn('the API token file is damaged (not 64 hex digits): replaced with a new token', { file: path })
  }
  const token = randomBytes(32).toString('hex')
  // a new file (tmp + rename): 0600 from its first byte, whatever mode the old one had
  await writeFileDurable(path, token + '\n', { mode: 0o600 })
  return token
}

/** uid -> admin, re-reading /etc/passwd and /etc/group at most every few seconds */
export class AdminCache {
  private at = 0
  private files = { passwd: '', group: '' }
  private readonly ttlMs: number
  constructor (ttlMs = 5000) { this.ttlMs = ttlMs }
  isAdmin = (uid: number): boolean => {
    if (uid === 0) return true
    return uidIsAdmin(uid, this.fresh())
  }

  /** the user name of a uid in /etc/passwd, if it has one */
  nameOf = (uid: number): string | undefined => this.fresh().passwd.split('\n').map(l => l.split(':')).find(f => f.length > 2 && Number(f[2]) === uid)?.[0]

  private fresh (): { passwd: string, group: string } {
    if (Date.now() - this.at > this.ttlMs) {
      const read = (p: string): string => { try { return readFileSync(p, 'utf8') } catch { return '' } }
      this.files = { passwd: read('/etc/passwd'), group: read('/etc/group') }
      this.at = Date.now()
    }
    return this.files
  }
}
