// Which cluster this agent belongs to: --key file, --token, the key kept in the
// data dir, or (embedded default) a brand-new single-node grid.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeToken, formatClusterKey, generateClusterKey, keyHex, parseClusterKey, type ClusterKey } from '../protocol/cluster-key.ts'
import { ConfigError } from './config.ts'
import { writeFileDurable } from './durable-file.ts'
import type { Logger } from './log.ts'
import { readSecretFile } from './secret-file.ts'

export const CLUSTER_KEY_FILE = 'cluster.key'

export interface ResolvedCluster {
  key: ClusterKey
  /** addresses the token brought */
  joinAddrs: string[]
  /** a new grid was started (no key, no token): the caller logs the join token */
  created: boolean
}

async function readOptional (path: string, what: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new ConfigError(`${what} ${path} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}

export async function writeClusterKey (path: string, key: ClusterKey): Promise<void> {
  await writeFileDurable(path, formatClusterKey(key), { mode: 0o600 })
}

export async function resolveCluster (dataDir: string, opts: { keyFile?: string, token?: string }, log?: Logger): Promise<ResolvedCluster> {
  const storedPath = join(dataDir, CLUSTER_KEY_FILE)
  const storedText = (await readSecretFile(storedPath, 'cluster key file', log))?.toString('utf8')
  let stored: ClusterKey | undefined
  if (storedText != null) {
    try {
      stored = parseClusterKey(storedText)
    } catch (err) {
      throw new ConfigError(`${storedPath}: ${(err as Error).message}`)
    }
  }
  if (opts.keyFile != null) {
    const text = await readOptional(opts.keyFile, '--key')
    if (text == null) throw new ConfigError(`--key: ${opts.keyFile} not found`)
    try {
      return { key: parseClusterKey(text), joinAddrs: [], created: false }
    } catch (err) {
      throw new ConfigError(`--key ${opts.keyFile}: ${(err as Error).message}`)
    }
  }
  if (opts.token != null) {
    let tok
    try {
      tok = decodeToken(opts.token)
    } catch (err) {
      throw new ConfigError(`--token: ${(err as Error).message}`)
    }
    if (stored != null && keyHex(stored) !== keyHex(tok.key)) {
      throw new ConfigError(`--token is for another cluster than the one this data dir (${dataDir}) belongs to; use a fresh --data-dir or remove ${storedPath}`)
    }
    if (stored == null) await writeClusterKey(storedPath, tok.key)
    return { key: tok.key, joinAddrs: tok.addrs, created: false }
  }
  if (stored != null) return { key: stored, joinAddrs: [], created: false }
  const key = generateClusterKey()
  await writeClusterKey(storedPath, key)
  return { key, joinAddrs: [], created: true }
}
