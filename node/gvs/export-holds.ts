// The snapshots `vgrid vol export` reads a volume in use from (export-*), and when one
// is abandoned: pure decisions over the document's volumes and what this node knows
// (export-sweeper.ts does the I/O). Such a snapshot carries `export: {node, run, until}`:
// the agent that made it (the one whose NBD server the export reads it through), that
// agent's run (a restarted agent's exports ended with the run before), and until when
// the hold stands for the other nodes, renewed by its agent while the export lasts. On
// its own node it is held while the export's hold request is open (the CLI keeps one
// open for the whole export) or an NBD session reads it. A snapshot without a valid
// record is a user's (or an earlier release's), and never judged abandoned here.
import type { Snapshot, Volume } from '../../crdt/index.ts'
import { EXPORT_SNAPSHOT } from './volumes.ts'

/** how long a hold stands for the other nodes past its last renewal; its agent renews it once half is left */
export const EXPORT_HOLD_MS = 5 * 60_000

/** what an export snapshot records of its export */
export interface ExportRecord {
  /** the agent that made it and serves its export */
  node: string
  /** that agent's run (a restart makes a new one) */
  run: string
  /** until when (ms since the epoch) the hold stands for the other nodes, unless renewed */
  until: number
  /**
   * taken for an export of a volume no one was seen using (every export reads a snapshot:
   * bb50): it does not keep the volume from `vol rm`, which takes it with the volume and
   * ends the export, as before such exports took one (rv49)
   */
  quiet?: true
}

/** an export snapshot's name: `export-<UTC time>-<random>` (EXPORT_SNAPSHOT), `random` a few of [a-z0-9] */
export function exportSnapshotName (now: number, random: string): string {
  if (!/^[a-z0-9]{1,8}$/.test(random)) throw new Error(`an export snapshot's random part must be 1-8 of [a-z0-9], not ${JSON.stringify(random)}`)
  return `export-${new Date(now).toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${random}`
}

/** the export record of a snapshot, or null: none, or one not of this shape (then it is a user's snapshot) */
export function exportRecordOf (s: Snapshot): ExportRecord | null {
  if (!EXPORT_SNAPSHOT.test(s.name)) return null
  const r = (s as Snapshot & { export?: unknown }).export
  if (r == null || typeof r !== 'object') return null
  const { node, run, until } = r as Record<string, unknown>
  if (typeof node !== 'string' || node === '' || typeof run !== 'string' || run === '' || typeof until !== 'number' || !Number.isFinite(until)) return null
  return { node, run, until, ...(r as { quiet?: unknown }).quiet === true ? { quiet: true as const } : {} }
}

/** what this node knows, taken at one moment */
export interface ExportFacts {
  now: number
  /** this node's id and its agent's run */
  self: string
  run: string
  /** snapshots, as `VOLUME-ID@NAME`, held on this node now: an export's hold request is open, or an NBD session reads it */
  held: ReadonlySet<string>
  /** the members' states as this node's membership has them (alive, suspect, dead, left); a node absent is not known here */
  members: ReadonlyMap<string, string>
  /** this node sees a majority of the grid's roll: only then does it judge another node's exports */
  majority: boolean
}

export interface ExportFate {
  volume: string
  path: string
  snapshot: string
  /** the node whose export it is */
  node: string
  /** its export is gone: the snapshot may be removed */
  abandoned: boolean
  /** why, in a few words (the node said as "its node") */
  why: string
  /** a quiet export's (ExportRecord.quiet) */
  quiet?: true
}

export const heldKey = (volume: string, snapshot: string): string => `${volume}@${snapshot}`

/**
 * Whether an export snapshot's export is gone, or null for a snapshot that is not an
 * export's (a user's). On its own node: gone unless held there now (a snapshot of an
 * earlier run of the agent is gone with that run, unless an NBD session reads it).
 * Elsewhere: never while an NBD session there reads it, nor while that node cannot
 * tell (no majority), nor while its node is alive or suspect (that node judges it, it
 * alone knows the export); gone once its node is dead, gone or unknown and its hold
 * has expired (its agent renews it while the export runs).
 */
export function exportFate (v: Volume, s: Snapshot, f: ExportFacts): ExportFate | null {
  const r = exportRecordOf(s)
  if (r == null) return null
  const fate = (abandoned: boolean, why: string): ExportFate => ({ volume: v.id, path: v.path, snapshot: s.name, node: r.node, abandoned, why, ...r.quiet === true ? { quiet: true as const } : {} })
  const held = f.held.has(heldKey(v.id, s.name))
  if (r.node === f.self) {
    if (held) return fate(false, 'its export runs on this node')
    if (r.run !== f.run) return fate(true, 'its export was served by an earlier run of the agent on this node, which ended with it')
    return fate(true, 'its export ended: the vgrid vol export that held it is gone and no NBD session reads it')
  }
  if (held) return fate(false, 'an NBD session on this node reads it')
  if (!f.majority) return fate(false, 'this node sees no majority of the grid, so cannot tell whether its export still runs')
  const st = f.members.get(r.node)
  if (st === 'alive' || st === 'suspect') return fate(false, `its export runs on its node (${st}), which removes it when the export ends`)
  const until = new Date(r.until).toISOString()
  const said = st ?? 'not known here'
  if (f.now < r.until) return fate(false, `its node is ${said}; its hold stands until ${until}`)
  return fate(true, `its node is ${said} and its hold expired at ${until}`)
}

/** every export snapshot of these volumes whose export is gone (exportFate) */
export function abandonedExports (volumes: readonly Volume[], f: ExportFacts): ExportFate[] {
  const out: ExportFate[] = []
  for (const v of volumes) {
    for (const s of Object.values(v.snapshots)) {
      const x = exportFate(v, s, f)
      if (x?.abandoned === true) out.push(x)
    }
  }
  return out
}

/**
 * The holds this node renews now, so that the other nodes keep off its exports: its own
 * (its node and run), held here, with less than half of EXPORT_HOLD_MS left; each to
 * `now + EXPORT_HOLD_MS`.
 */
export function exportRenewals (volumes: readonly Volume[], f: ExportFacts): Array<{ volume: string, snapshot: string, record: ExportRecord }> {
  const out: Array<{ volume: string, snapshot: string, record: ExportRecord }> = []
  for (const v of volumes) {
    for (const s of Object.values(v.snapshots)) {
      const r = exportRecordOf(s)
      if (r == null || r.node !== f.self || r.run !== f.run || !f.held.has(heldKey(v.id, s.name))) continue
      if (r.until - f.now < EXPORT_HOLD_MS / 2) out.push({ volume: v.id, snapshot: s.name, record: { ...r, until: f.now + EXPORT_HOLD_MS } })
    }
  }
  return out
}
