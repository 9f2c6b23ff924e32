// Writes this node's store refused for want of room (ENOSPC, EDQUOT), from any writer
// on the grid, for the node's health (`/v1/status`): the node whose disk is full must
// say so itself, not only the nodes whose clients' writes failed (io-failures.ts). Shown
// for `windowMs` after the last one, or until the disk has room again.
import { statfsSync } from 'node:fs'
import type { HealthProblem } from '../api/types.ts'
import { GvsError } from './errors.ts'
import { reserveFor } from './disk-room.ts'

export const DISK_FULL_WINDOW_MS = 60_000
/** a refusal this old, with room on the disk again, is over (a tester freed the disk and health said full for a minute) */
export const ROOM_AGAIN_AFTER_MS = 5000
const ROOM_MARGIN = 16 * 2 ** 20

/** whether the store's file system has room for object data again: above the reserve, with some to spare */
function roomIn (dir: string): boolean {
  try {
    const fs = statfsSync(dir)
    return fs.bavail * fs.bsize > reserveFor(fs.blocks * fs.bsize) + ROOM_MARGIN
  } catch { return false }
}

export class DiskFull {
  private seen: { first: number, last: number, count: number, message: string } | null = null
  private readonly dir: string
  private readonly windowMs: number
  private readonly now: () => number

  private readonly room: () => boolean

  constructor (dir: string, windowMs = DISK_FULL_WINDOW_MS, now: () => number = Date.now, room: (dir: string) => boolean = roomIn) {
    this.dir = dir
    this.windowMs = windowMs
    this.now = now
    this.room = () => room(dir)
  }

  /** a request to this node's store failed: counted if for want of room */
  note (err: unknown): void {
    if (!(err instanceof GvsError) || err.code !== 'no-space') return
    const now = this.now()
    if (this.seen != null && now - this.seen.last <= this.windowMs) Object.assign(this.seen, { last: now, count: this.seen.count + 1, message: err.message })
    else this.seen = { first: now, last: now, count: 1, message: err.message }
  }

  problems (): HealthProblem[] {
    const s = this.seen
    const since = s == null ? Infinity : this.now() - s.last
    if (s == null || since > this.windowMs || (since >= ROOM_AGAIN_AFTER_MS && this.room())) { this.seen = null; return [] }
    return [{ service: 'gvs', cause: 'disk-full', message: `this node's volume store (${this.dir}) refused ${s.count} write(s) for want of room since ${new Date(s.first).toISOString()}, the last: ${s.message}; make room there (or add nodes): the volumes with copies here are degraded until then`, since: new Date(s.first).toISOString() }]
  }
}
