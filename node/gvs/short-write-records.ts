// The record of writes with fewer than R copies (short-writes.ts): what a writer on
// this node does before such a write (record the set, have a majority of the roll hold
// it on disk), what a reader checks (the sets in force), and what a healthy repair
// clears. The decisions are short-writes.ts; this is the document and the asking.
import type { Reader, Writer } from '../../crdt/index.ts'
import { hasMajority } from '../../crdt/placement/fence.ts'
import type { Logger } from '../log.ts'
import type { RequestHost } from '../p2p/request.ts'
import { HOLDS_PROTOCOL, askHolds } from '../state/holds-check.ts'
import { GvsError } from './errors.ts'
import { activeSets, clearedBefore, planShortWrite, shortKey, withSet, type ShortWrite } from './short-writes.ts'

export interface ShortWriteRecordsComponents {
  self: string
  log: Logger
  state: {
    read: () => Reader
    write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T>
    /** the document's heads, for the members to confirm holding */
    heads?: () => string[]
  }
  host?: RequestHost
  /** alive in this node's member table */
  alive: (node: string) => boolean
  nameOf: (node: string) => string
}

export class ShortWriteRecords {
  private readonly c: ShortWriteRecordsComponents
  /** "volume/set key" a majority confirmed holding when this node asked */
  private readonly confirmed = new Set<string>()
  /** records and refreshes under way, by "volume/set key": writes of the same set wait for one */
  private readonly inflight = new Map<string, Promise<void>>()

  constructor (components: ShortWriteRecordsComponents) {
    this.c = components
  }

  /**
   * The sets in force of a volume (by its id). No volume is read or written on a node
   * that sees no majority of the roll: the majority may have written since this node
   * last heard of it (a node back alone after being down, or cut off), and a node back
   * alone has not synced the record of where writes with fewer than R copies went (the
   * majority that holds it is away). Its copies may be older, with nothing in them to
   * say so: it cannot tell. Throws then (transient: a reader or writer waits a while
   * for the majority).
   */
  sets (volumeId: string): ShortWrite[] {
    const v = this.c.state.read().get('volumes', volumeId)?.value
    if (v == null) return []
    const why = this.noMajority()
    if (why != null) throw new GvsError('unavailable', `volume "${v.path}": ${why}, so it cannot tell whether its copies are the newest (the others may have written since)`, { transient: true })
    return Object.values(activeSets(v))
  }

  /** why this node sees no majority of the roll (itself included), or null */
  noMajority (): string | null {
    const roll = new Set(this.c.state.read().list('roll').map(e => e.node))
    roll.add(this.c.self)
    const seen = [...roll].filter(n => n === this.c.self || this.c.alive(n)).length
    return hasMajority(roll.size, seen) ? null : `this node sees ${seen} of the grid's ${roll.size} members (no majority)`
  }

  /**
   * Before a write to fewer than R holders: resolves once the set is recorded and held
   * by a majority of the roll; fails (transient: the writer tries again for a while)
   * while no majority holds it.
   */
  async before (volumeId: string, holders: readonly string[]): Promise<void> {
    const v = this.c.state.read().get('volumes', volumeId)?.value
    if (v == null) throw new GvsError('unavailable', `volume ${volumeId} no longer exists`)
    const ck = `${volumeId}/${shortKey(holders)}`
    const plan = planShortWrite(v, holders, Date.now(), this.confirmed.has(ck))
    if (plan === 'recorded') return
    let p = this.inflight.get(ck)
    if (p == null) {
      p = (plan === 'refresh' ? this.write(volumeId, holders, 'still').then(() => {}) : this.record(volumeId, holders, ck)).finally(() => { this.inflight.delete(ck) })
      this.inflight.set(ck, p)
    }
    await p
  }

  private async write (volumeId: string, holders: readonly string[], how: 'now' | 'still'): Promise<string> {
    const names = holders.map(this.c.nameOf).join(', ')
    return await this.c.state.write(w => {
      const cur = w.reader.get('volumes', volumeId)?.value
      if (cur == null) throw new GvsError('unavailable', `volume ${volumeId} no longer exists`)
      w.update('volumes', volumeId, { shortWrites: withSet(cur, holders, Date.now()) })
      return cur.path
    }, `gvs: volume ${volumeId} ${how} takes writes on ${names} only (fewer than R copies)`)
  }

  private async record (volumeId: string, holders: readonly string[], ck: string): Promise<void> {
    const path = await this.write(volumeId, holders, 'now')
    const me = this.c.self
    const roll = new Set(this.c.state.read().list('roll').map(e => e.node))
    roll.add(me)
    const peers = [...roll].filter(n => n !== me && this.c.alive(n)).sort()
    const missing = await askHolds(this.c.host, HOLDS_PROTOCOL, peers, this.c.state.heads?.() ?? [], this.c.nameOf)
    const held = 1 + peers.length - missing.length
    const names = holders.map(this.c.nameOf).join(', ')
    if (!hasMajority(roll.size, held)) {
      throw new GvsError('unavailable', `volume "${path}": a write kept only on ${names} (fewer than R copies) waits until a majority of the grid's ${roll.size} members holds the record of where it is, and ${held} ${held === 1 ? 'does' : 'do'}${missing.length > 0 ? ` (${missing.join('; ')})` : ''}`, { transient: true })
    }
    this.confirmed.add(ck)
    this.c.log.warn('a volume takes writes with fewer than R copies: recorded where they are, held by a majority', { volume: path, nodes: names, held })
  }

  /** after a repair that began at `startedAt` and ended healthy: the sets written well before it are cleared */
  async repaired (volumeId: string, startedAt: number): Promise<void> {
    const v = this.c.state.read().get('volumes', volumeId)?.value
    if (v == null || clearedBefore(v, startedAt) == null) return
    await this.c.state.write(w => {
      const cur = w.reader.get('volumes', volumeId)?.value
      const mark = cur == null ? null : clearedBefore(cur, startedAt)
      if (mark != null) w.update('volumes', volumeId, { shortClearedBefore: mark })
    }, `gvs: volume ${volumeId} is back on R copies: its writes with fewer are recorded no more`)
  }
}
