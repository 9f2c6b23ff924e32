// Output helpers of `vgrid vol` (cli.ts, cli-copy.ts).
import type { VolumeHealthView } from './health.ts'

export const out = (s: string): void => { process.stdout.write(s + '\n') }
export const json = (v: unknown): void => { out(JSON.stringify(v, null, 2)) }
export const enc = encodeURIComponent

/** "healthy", "degraded", "repairing 45%", "degraded, no reads or writes here (no majority)" */
export function stateText (h: VolumeHealthView): string {
  if (h.noMajority != null) return `${h.state}, no reads or writes here (no majority)`
  if (h.state === 'repairing' && h.repair != null && h.repair.total > 0) return `repairing ${Math.floor(h.repair.done / h.repair.total * 100)}%`
  return h.state
}

/** bytes with their unit: "0 B", "512 B", "4 MiB", "1.5 GiB" */
export function bytesText (b: number): string {
  const s = size(b)
  return /[KMGT]$/.test(s) ? `${s.slice(0, -1)} ${s.slice(-1)}iB` : `${s} B`
}

export function size (b: number): string {
  for (const [u, n] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) if (b >= n) return `${(b / n).toFixed(b % n === 0 ? 0 : 1)}${u}`
  return `${b}`
}

/**
 * `vol info`'s progress line of the repair running now, or null: none while it has
 * nothing to copy (a background pass over a healthy volume showed "0/0 copies" after
 * every repair was done), and the node that copies by name (`nodeName`). Pure.
 */
export function progressLine (r: VolumeHealthView['repair'], nodeName: (id: string) => string): string | null {
  if (r == null || (r.total === 0 && r.failed === 0)) return null
  return `progress  ${r.done}/${r.total} copies, ${bytesText(r.bytes)}, ${r.failed} failed (on ${nodeName(r.node)})`
}

/**
 * `vol info`'s scrub line: this node's scheduled scrub of its copies (`here`), and the
 * last repair with scrub, which verified every copy on every node (it read "none of
 * its copies here checked yet" right after vol repair --scrub said every copy was
 * sound). Pure.
 */
export function scrubLine (here: { at: string, objects: number, bad: number, repaired: number } | null, last: VolumeHealthView['lastRepair'], nodeName: (id: string) => string): string {
  const mine = here == null ? 'this node\'s scheduled scrub has checked none of its copies yet' : `${here.at}: ${here.objects} objects here checked by this node's scheduled scrub, ${here.bad} bad, ${here.repaired} rewritten`
  const all = last?.scrubbedAt == null ? null : `${new Date(last.scrubbedAt).toISOString()}: every copy checked by vol repair --scrub on ${nodeName(last.node)}`
  return all == null ? mine : here != null && Date.parse(here.at) > last!.scrubbedAt! ? `${mine}; before that, ${all}` : `${all}; ${mine}`
}

/**
 * `vol info`'s line of the last repair, its bytes with their unit (it read "0 copied (0)"). Pure.
 * `noMajority`: this node sees no majority, so the coordinator's last repair may be on the other side.
 */
export function repairLine (lr: VolumeHealthView['lastRepair'], nodeName: (id: string) => string, noMajority?: string): string {
  return `repair    ${lr == null ? (noMajority == null ? 'none yet' : 'not known here (this node sees no majority: the last repair\'s record is with its coordinator)') : `${new Date(lr.at).toISOString()} on ${nodeName(lr.node)}: ${lr.copied} copied (${bytesText(lr.bytes)}), ${lr.failed} failed${lr.lost > 0 ? `, ${lr.lost} lost` : ''}`}`
}

/**
 * `vol info`'s layer count and what the layers under the top are there for (a tester
 * read `11 of 128` with 2 snapshots and could not tell that clones kept 8). An older
 * agent's answer has the count and the folds only.
 */
export function layersLine (l: { count: number, max: number, folding: number, waiting?: string, snapshots?: number, source?: number, clones?: number, untilNextSnapshot?: number }): string {
  const parts = [
    (l.snapshots ?? 0) > 0 ? `${l.snapshots} for snapshots` : '',
    (l.source ?? 0) > 0 ? `${l.source} of the snapshot it was cloned from` : '',
    (l.clones ?? 0) > 0 ? `${l.clones} kept for clones of deleted snapshots` : '',
    (l.untilNextSnapshot ?? 0) > 0 ? `${l.untilNextSnapshot} of a deleted snapshot, folded away after the next snapshot` : '',
    l.folding > 0 ? `${l.folding} left by deleted snapshots, ${l.waiting != null ? `waiting to be folded away: ${l.waiting}` : 'to be folded away in the background'}` : ''
  ].filter(p => p !== '')
  return `${l.count} of ${l.max}${parts.length > 0 ? ` (${parts.join('; ')})` : ''}`
}
