// `vgrid state`: the local agent's copy of the cluster document and how it syncs.
import { parse, API_OPTION, JSON_OPTION } from '../args.ts'
import { ApiClient } from '../client.ts'
import { bytes, shortId, table } from '../format.ts'
import type { StateView } from '../../state/index.ts'

function ago (iso: string | null): string {
  if (iso == null) return 'never'
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000)
  return s < 60 ? `${s.toFixed(1)}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`
}

export async function state (argv: string[]): Promise<void> {
  const { values: v } = parse(argv, { ...API_OPTION, ...JSON_OPTION }, 'vgrid state [--json] [--api HOST:PORT]')
  const s = await new ApiClient(v.api as string | undefined).get<StateView>('/v1/state')
  if (v.json === true) {
    process.stdout.write(JSON.stringify(s, null, 2) + '\n')
    return
  }
  const c = s.counts
  const lines = [
    `heads     ${s.heads.map(h => h.slice(0, 12)).join(' ')}${s.heads.length > 1 ? ` (${s.heads.length} concurrent)` : ''}`,
    `digest    ${s.digest.slice(0, 16)}`,
    `schema    ${s.schema.document} (this agent knows up to ${s.schema.agent})`,
    `objects   ${c.apps} apps, ${c.vms} vms, ${c.leases} leases, ${c.volumes} volumes, ${c.connections} connections, ${c.nodeLabels} node labels`,
    `          ${c.contested} contested (resolved by rule), ${c.invalid} invalid (skipped)`,
    `history   ${s.history.changes} changes, ${s.history.ops} ops, ${s.history.actors} actors`,
    `disk      ${bytes(s.size.diskBytes)} (snapshot ${bytes(s.size.snapshotBytes)}, log ${bytes(s.size.logBytes)} in ${s.size.logRecords} records)`,
    `memory    ${bytes(s.size.memoryBytes)} (agent process, WebAssembly and other external memory)`,
    `saved     ${ago(s.persistence.lastFlushAt)}, last snapshot ${ago(s.persistence.lastSnapshotAt)}`
  ]
  for (const r of s.persistence.recovered) lines.push(`recovered ${r.file} was damaged at ${r.at} (${r.detail}); kept as ${r.keptAs}`)
  if (s.blocked.length > 0) lines.push(`blocked   sync refused with ${s.blocked.length} peers (test hook)`)
  lines.push('')
  if (s.peers.length === 0) {
    lines.push('no peers have synced with this agent yet')
  } else {
    lines.push(table(['PEER', 'ID', 'SESSION', 'IN SYNC', 'LAST SYNC', 'LAST CHANGE', 'CHANGES IN', 'IN', 'OUT'], s.peers.map(p => [
      p.name ?? '-',
      shortId(p.id),
      p.session ? 'open' : 'closed',
      p.inSync ? 'yes' : 'no',
      ago(p.lastSyncAt),
      ago(p.lastChangeAt),
      String(p.changesIn),
      bytes(p.bytesIn),
      bytes(p.bytesOut)
    ])))
  }
  process.stdout.write(lines.join('\n') + '\n')
}
