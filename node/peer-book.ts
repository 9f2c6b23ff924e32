// The peer book: where members were last seen, kept in the data dir so that an
// agent restarted on its own (no --join, no mDNS) still finds its grid again.
// Members that left gracefully stay in it, marked as left: when a whole grid is
// stopped and started again (in any order, mDNS off), the others' "left" entries are
// all each agent has, and they are dialled after the members still running.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileDurable } from './durable-file.ts'
import type { Logger } from './log.ts'
import type { MemberTable } from '../protocol/membership.ts'

export const PEER_BOOK_FILE = 'peers.json'

/** 'member': running when last seen (alive, suspect or dead); 'left': stopped gracefully */
export type PeerBookState = 'member' | 'left'

export interface PeerEntry { id: string, addrs: string[], state: PeerBookState }

/**
 * What to save (pure): every member but this node that advertised an address, left
 * ones included and marked so, members first. Why keep the left: see the file head.
 */
export function peerBookEntries (members: MemberTable, selfId: string): PeerEntry[] {
  const out: PeerEntry[] = []
  for (const m of members.values()) {
    if (m.nodeId === selfId || m.advert.addrs.length === 0) continue
    out.push({ id: m.nodeId, addrs: [...m.advert.addrs], state: m.state === 'left' ? 'left' : 'member' })
  }
  return out.sort((a, b) => Number(a.state === 'left') - Number(b.state === 'left') || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}

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
    // entries from before the state field are members
    return v.peers.filter((p): p is PeerEntry =>
      typeof p?.id === 'string' && Array.isArray(p.addrs) && p.addrs.every((a: unknown) => typeof a === 'string'))
      .map(p => ({ id: p.id, addrs: p.addrs, state: p.state === 'left' ? 'left' : 'member' }))
  } catch (err) {
    log.warn('ignoring damaged peer book', { path, error: (err as Error).message })
    return []
  }
}

export async function savePeerBook (dataDir: string, peers: PeerEntry[]): Promise<void> {
  const path = join(dataDir, PEER_BOOK_FILE)
  await writeFileDurable(path, JSON.stringify({ peers }, null, 1))
}
