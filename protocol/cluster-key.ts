// The cluster key: a libp2p pnet v1 pre-shared key. Only holders can complete a
// connection handshake; its hash names the cluster on the wire (topics, adverts).
import { createHash, randomBytes } from 'node:crypto'
import { multiaddrProblem } from './address-check.ts'

const HEADER = '/key/swarm/psk/1.0.0/\n/base16/\n'

export interface ClusterKey {
  /** the 95-byte pnet v1 text form, as @libp2p/pnet wants it */
  readonly psk: Uint8Array
  /** short public name of the cluster, derived from the key */
  readonly clusterId: string
}

export class ClusterKeyError extends Error {
  override name = 'ClusterKeyError'
}

export function generateClusterKey (): ClusterKey {
  return clusterKeyFromHex(randomBytes(32).toString('hex'))
}

export function clusterKeyFromHex (hex: string): ClusterKey {
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new ClusterKeyError('cluster key must be 64 lowercase hex characters (32 bytes)')
  }
  const psk = new TextEncoder().encode(HEADER + hex)
  const clusterId = createHash('sha256').update('vgrid-cluster:' + hex).digest('hex').slice(0, 16)
  return { psk, clusterId }
}

/** Parses a key file's text (the pnet v1 format, trailing newline allowed). */
export function parseClusterKey (text: string): ClusterKey {
  const lines = text.trim().split('\n').map(l => l.trim())
  if (lines.length !== 3 || lines[0] !== '/key/swarm/psk/1.0.0/' || lines[1] !== '/base16/') {
    throw new ClusterKeyError('not a cluster key file (expected the 3-line /key/swarm/psk/1.0.0/ format)')
  }
  return clusterKeyFromHex(lines[2] ?? '')
}

export function keyHex (key: ClusterKey): string {
  return new TextDecoder().decode(key.psk).slice(HEADER.length)
}

export function formatClusterKey (key: ClusterKey): string {
  return new TextDecoder().decode(key.psk) + '\n'
}

/**
 * A join token carries the key and a few member addresses, so one string is all a
 * new server needs: `vgrid1.<base64url(JSON)>`.
 */
export interface JoinToken {
  key: ClusterKey
  addrs: string[]
}

const TOKEN_PREFIX = 'vgrid1.'

export function encodeToken (key: ClusterKey, addrs: string[]): string {
  const body = JSON.stringify({ k: keyHex(key), a: addrs.slice(0, 8) })
  return TOKEN_PREFIX + Buffer.from(body).toString('base64url')
}

export function decodeToken (token: string): JoinToken {
  const t = token.trim()
  if (!t.startsWith(TOKEN_PREFIX)) throw new ClusterKeyError('join token must start with "vgrid1."')
  let body: unknown
  try {
    body = JSON.parse(Buffer.from(t.slice(TOKEN_PREFIX.length), 'base64url').toString('utf8'))
  } catch {
    throw new ClusterKeyError('join token is damaged (not base64url JSON)')
  }
  const b = body as { k?: unknown, a?: unknown }
  if (typeof b !== 'object' || b == null || typeof b.k !== 'string' || !Array.isArray(b.a) || !b.a.every(a => typeof a === 'string')) {
    throw new ClusterKeyError('join token is damaged (missing key or addresses)')
  }
  for (const a of b.a as string[]) {
    const problem = multiaddrProblem(a)
    if (problem != null) throw new ClusterKeyError(`join token is damaged (its address ${JSON.stringify(a.slice(0, 120))}: ${problem})`)
  }
  return { key: clusterKeyFromHex(b.k), addrs: b.a as string[] }
}
