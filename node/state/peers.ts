// What this agent knows about syncing with each peer, for GET /v1/state. Bounded:
// entries of peers without a session are dropped oldest first past the limit.
export interface PeerStatus {
  id: string
  /** a sync session is open */
  session: boolean
  /** the peer's last reported heads equal ours */
  inSync: boolean
  /** last time a sync message came from the peer */
  lastSyncAt: number | null
  /** last time the peer delivered changes we did not have */
  lastChangeAt: number | null
  messagesIn: number
  messagesOut: number
  bytesIn: number
  bytesOut: number
  changesIn: number
}

export class PeerTable {
  private readonly max: number
  private readonly m = new Map<string, PeerStatus>()

  constructor (max = 1024) {
    this.max = max
  }

  private get (id: string): PeerStatus {
    let p = this.m.get(id)
    if (p == null) {
      p = { id, session: false, inSync: false, lastSyncAt: null, lastChangeAt: null, messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, changesIn: 0 }
      this.m.set(id, p)
      if (this.m.size > this.max) this.evict()
    }
    return p
  }

  private evict (): void {
    const idle = [...this.m.values()].filter(p => !p.session).sort((a, b) => (a.lastSyncAt ?? 0) - (b.lastSyncAt ?? 0))
    for (const p of idle.slice(0, this.m.size - this.max)) this.m.delete(p.id)
  }

  opened (id: string): void { this.get(id).session = true }
  closed (id: string): void {
    const p = this.get(id)
    p.session = false
    p.inSync = false
  }

  received (id: string, bytes: number): void {
    const p = this.get(id)
    p.messagesIn++
    p.bytesIn += bytes
    p.lastSyncAt = Date.now()
  }

  sent (id: string, bytes: number): void {
    const p = this.get(id)
    p.messagesOut++
    p.bytesOut += bytes
  }

  changes (id: string, n: number): void {
    const p = this.get(id)
    p.changesIn += n
    p.lastChangeAt = Date.now()
  }

  inSync (id: string, v: boolean): void { this.get(id).inSync = v }

  list (): PeerStatus[] {
    return [...this.m.values()].map(p => ({ ...p })).sort((a, b) => a.id.localeCompare(b.id))
  }
}
