// The peer book: where members were last seen, kept in the data dir so that an
// agent restarted on its own (no --join, no mDNS) still finds its grid again.
import { readFile, writeFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from './log.ts'

export const PEER_BOOK_FILE = 'peers.json'

export interface PeerEntry { id: string, addrs: string[] }

export async function loadPeerBook (dataDir: string, log: Logger): Promise<PeerEntry[]> {
  const path = join(dataDir, PEER_BOOK_FILE)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch {
    return []
  }
  try {
    const v = JSON.parse(text) as { peers?: unknown }
    if (!Array.isArray(v.peers)) throw new Error('no "peers" list')
    return v.peers.filter((p): p is PeerEntry =>
      typeof p?.id === 'string' && Array.isArray(p.addrs) && p.addrs.every((a: unknown) => typeof a === 'string'))
  } catch (err) {
    log.warn('ignoring damaged peer book', { path, error: (err as Error).message })
    return []
  }
}

export async function savePeerBook (dataDir: string, peers: PeerEntry[]): Promise<void> {
  const path = join(dataDir, PEER_BOOK_FILE)
  await writeFile(path + '.tmp', JSON.stringify({ peers }, null, 1))
  await rename(path + '.tmp', path)
}
