// CLI commands of GVS, clients of the local agent's API:
//   vgrid vol create|ls|info|resize|mv|rm|snapshot|clone|repair|scrub|import|export
// The long copies (repair, scrub, import, export) are in cli-copy.ts.
import { parse } from '../cli/args.ts'
import { ApiClient, CliError } from '../cli/client.ts'
import type { VolumeUsersView, VolumeView } from './routes.ts'
import { sayWriters } from './say-writers.ts'
import { copyFile, repair, scrub } from './cli-copy.ts'
import { OBJECT_SIZE } from './placement.ts'
import { enc, json, layersLine, out, progressLine, repairLine, scrubLine, size, stateText } from './cli-format.ts'

const USAGE = `usage: vgrid vol create PATH --size SIZE [--replicas N (default 2)] [--min-replicas N (copies a write needs; default: all N)] [--json]
       vgrid vol ls [PREFIX] [--json]
       vgrid vol info VOL [--json]
       vgrid vol resize VOL SIZE [--json]
       vgrid vol mv VOL NEWPATH [--json]
       vgrid vol rm VOL [--snapshots (its snapshots too)] [--json]
       vgrid vol snapshot VOL NAME [--json]   (one volume)
       vgrid vol snapshot NAME VOL VOL... --set [--json]   (one consistent cut of several)
       vgrid vol snapshot rm VOL NAME [--json]
       vgrid vol clone VOL@SNAPSHOT NEWPATH [--json]
       vgrid vol repair VOL [--scrub] [--force] [--json]   (--scrub: verify every copy first; --force: also while a member is away for a restart)
       vgrid vol scrub [--now] [--json]          (this node's scheduled scrub)
       vgrid vol import FILE VOL [--format raw|qcow2] [--json]
                                                 (no --format: FILE's name says it: .qcow2 qcow2; .raw, .img, none raw; .vmdk and the like refused)
       vgrid vol export VOL[@SNAPSHOT] FILE [--format raw|qcow2] [--force (over an existing FILE)] [--json]
                                                 (a volume in use: from a snapshot taken then, removed after)
                                                 (no --format: FILE's name says it, as for import)
VOL is a volume's path (/shop/db/data) or id; SIZE is bytes or a number with K, M, G, T or P (KB/KiB, MB/MiB... alike: units of 1024)
every command takes --api HOST:PORT; with --json its answer is JSON on stdout (import's and export's progress on stderr; repair and scrub answer when done)`

/** the usage lines of one subcommand (its continuation lines too), or all of them */
export function usageOf (sub: string | undefined): string {
  const lines = USAGE.split('\n')
  const out: string[] = []
  let mine = false
  for (const l of lines) {
    const m = /^(?:usage: | +)vgrid vol (\S+)/.exec(l)
    if (m != null) mine = m[1] === sub || (sub === 'list' && m[1] === 'ls')
    else if (!/^ {20,}/.test(l)) mine = false
    if (mine) out.push(m == null ? l : l.replace(/^(usage: | +)/, out.length === 0 ? 'usage: ' : '       '))
  }
  // the footer: its last two lines (what VOL and SIZE are; --api and --json)
  return out.length === 0 ? USAGE : `${out.join('\n')}\n${lines.slice(-2).join('\n')}`
}

function table (rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length)))
  return rows.map(r => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd()).join('\n')
}

const common = { api: { type: 'string' }, json: { type: 'boolean' } } as const
/** snapshots `vol info` lists by name (the newest) */
const SNAPSHOTS_SHOWN = 10

/**
 * the flags each subcommand takes besides --api and --json (those every command takes:
 * `vgrid --json ...` hands --json to all); one given to another is refused, not
 * ignored (`vol rm --force` removed the volume as if it meant something)
 */
const FLAGS_OF: Record<string, readonly string[]> = {
  create: ['size', 'replicas', 'min-replicas'],
  ls: [],
  list: [],
  info: [],
  resize: [],
  mv: [],
  rm: ['snapshots'],
  snapshot: ['set'],
  clone: [],
  repair: ['scrub', 'force'],
  scrub: ['now'],
  import: ['format'],
  export: ['format', 'force']
}

export async function vol (argv: string[]): Promise<void> {
  const [sub, ...rest] = argv
  const { values: v, positionals: p } = parse(rest, {
    ...common,
    size: { type: 'string' },
    replicas: { type: 'string' },
    'min-replicas': { type: 'string' },
    format: { type: 'string' },
    set: { type: 'boolean' },
    scrub: { type: 'boolean' },
    now: { type: 'boolean' },
    force: { type: 'boolean' },
    snapshots: { type: 'boolean' }
    // a bad flag of one subcommand shows its usage, not all twenty lines of vol's
  }, usageOf(sub), 300)
  const api = new ApiClient(v.api as string | undefined)
  /** exactly `n` arguments (at least `n` with `more`): one too many is refused, never dropped (vol rm A B removed A only) */
  const need = (n: number, more = false): string[] => {
    if (p.length < n) throw new CliError(`vgrid vol ${sub ?? ''}: missing arguments\n${usageOf(sub)}`, 2)
    if (!more && p.length > n && n === 0) throw new CliError(`vgrid vol ${sub ?? ''} takes no argument: ${p.map(x => JSON.stringify(x)).join(' ')} ${p.length === 1 ? 'is' : 'are'} more (it scrubs this node's copies of every volume)\n${usageOf(sub)}`, 2)
    // a size where --size goes (bb46: `vol create /shop/z 1G`)
    const sizeHint = sub === 'create' && v.size == null && p.length === 2 && /^\d+(\.\d+)?\s*[KMGTP]?(i?B)?$/i.test(p[1]!) ? ` (the size goes after --size: vgrid vol create ${p[0]!} --size ${p[1]!})` : ''
    if (!more && p.length > n) throw new CliError(`vgrid vol ${sub ?? ''} takes ${n} argument${n === 1 ? '' : 's'}, not ${p.length}: ${p.slice(n).map(x => JSON.stringify(x)).join(' ')} ${p.length - n === 1 ? 'is' : 'are'} more${sizeHint !== '' ? sizeHint : ' (one volume per command)'}\n${usageOf(sub)}`, 2)
    return p
  }
  const int = (x: unknown, flag: string): number | undefined => {
    if (x == null) return undefined
    // decimal digits only: Number() also took 0x2 and 1e1 (bb41), as --size and --cpu do not
    if (!/^\s*-?\d+\s*$/.test(String(x))) throw new CliError(`${flag} "${String(x)}" is not a whole number`, 2)
    return Number(x)
  }
  const takes = sub == null ? undefined : FLAGS_OF[sub]
  const wrong = takes == null ? [] : Object.keys(v).filter(f => f !== 'api' && f !== 'json' && !takes.includes(f))
  if (wrong.length > 0) throw new CliError(`vgrid vol ${sub!}: ${wrong.map(f => `--${f}`).join(', ')} ${wrong.length === 1 ? 'is not one of its flags' : 'are not among its flags'}\n${usageOf(sub)}`, 2)
  switch (sub) {
    case 'create': {
      const [path] = need(1)
      if (v.size == null) throw new CliError(`--size is required\n${usageOf(sub)}`, 2)
      const d = await api.request<VolumeView>('POST', '/v1/volumes', { path, size: v.size, replicas: int(v.replicas, '--replicas'), minReplicas: int(v['min-replicas'], '--min-replicas') })
      return v.json === true ? json(d) : out(`${d.path}: ${size(d.sizeBytes)}, R=${d.replicas} (id ${d.id})\n  nbd: ${d.nbd}${d.note != null ? `\n  note: ${d.note}` : ''}`)
    }
    case 'ls': case 'list': {
      if (p.length > 1) throw new CliError(`vol ls takes one path prefix, not ${p.length} arguments: ${p.join(' ')}`, 2)
      const r = await api.request<{ volumes: VolumeView[] }>('GET', `/v1/volumes${p[0] != null ? `?prefix=${enc(p[0])}` : ''}`)
      if (v.json === true) return json(r)
      if (r.volumes.length === 0) return out('no volumes')
      // a volume a forget gave writes up of says so beside its state, for good (vol info says which)
      return out(table([['PATH', 'SIZE', 'R', 'STATE', 'ID'], ...r.volumes.map(x => [x.path, size(x.sizeBytes), String(x.replicas), `${x.state === 'ready' ? stateText(x.health) : x.state}${(x.writesGivenUp?.length ?? 0) > 0 ? ', writes given up' : ''}`, x.id])]))
    }
    case 'info': {
      const ref = need(1)[0]!
      // VOL@SNAP: the snapshot, as its volume's view has it (bb29: refused as "read-only")
      const at = ref.lastIndexOf('@')
      if (at > 0) {
        const d = await api.request<VolumeView>('GET', `/v1/volumes/${enc(ref.slice(0, at))}`).catch(() => null)
        const s = d?.snapshots.find(x => x.name === ref.slice(at + 1))
        if (d != null && s != null) {
          const clones = (await api.request<{ volumes: VolumeView[] }>('GET', '/v1/volumes').catch(() => ({ volumes: [] }))).volumes.filter(x => x.clonedFrom === `${d.path}@${s.name}`).map(x => x.path)
          if (v.json === true) return json({ volume: d.path, volumeId: d.id, ...s, clones })
          return out([`${d.path}@${s.name}`, `snapshot  of ${d.path} (id ${d.id}), read-only`, `taken     ${s.createdAt}`, `size      ${size(s.sizeBytes)}`, `nbd       ${s.nbd}`,
            `clones    ${clones.length === 0 ? 'none' : clones.join(', ')}`, ...(s.export != null ? [`export    read by a vgrid vol export on ${s.export.name}`] : [])].join('\n'))
        }
      }
      const d = await api.request<VolumeView>('GET', `/v1/volumes/${enc(ref)}`)
      // who uses it: the VMs whose disk it is, and NBD sessions writing it (an older agent has no /users: left out)
      const users = await api.request<VolumeUsersView>('GET', `/v1/volumes/${enc(d.id)}/users`).catch(() => null)
      if (v.json === true) return json(users == null ? d : { ...d, users: { vms: users.vms, writers: users.writers } })
      const h = d.health
      const lr = h.lastRepair
      // the nodes that ran the last repair and run the one now, by name (the view has their ids)
      const listed = lr == null && h.repair == null && h.copiesOn == null ? [] : (await api.request<{ nodes: Array<{ id: string, name: string }> }>('GET', '/v1/nodes').catch(() => null))?.nodes
      const nodes = listed ?? []
      // a node that left or was forgotten is not listed, though its last repair may be named (rv41): asked for by id,
      // at once, and not when the list itself failed (each would fail again: rv42)
      const named = listed == null ? [] : [...new Set([lr?.node, h.repair?.node, ...Object.keys(h.copiesOn ?? {})])].filter((id): id is string => id != null && !nodes.some(n => n.id === id))
      const found = await Promise.all(named.map(async id => await api.request<{ id: string, name: string }>('GET', `/v1/nodes/${enc(id)}`).catch(() => null)))
      for (const one of found) if (one != null) nodes.push(one)
      const nodeName = (id: string): string => nodes.find(n => n.id === id)?.name ?? id
      const usedBy = users == null
        ? []
        // an older agent's answer has no state nor formerRuns
        : [`used by   ${[...users.vms.map(x => `VM ${x.name} (${x.state ?? (x.running ? 'running' : 'stopped')})`), ...(users.formerRuns ?? []).map(f => `removed VM ${f.vm} (its run on ${f.name} may still have it open)`), ...users.writers.map(x => `NBD: ${sayWriters(x)}`)].join(', ') || 'nothing'}`]
      return out([`path      ${d.path}`, `id        ${d.id}`, `size      ${size(d.sizeBytes)} (${d.sizeBytes} bytes)`, `replicas  ${d.replicas} (writes need ${d.minReplicas})`,
        `thin      ${d.thin ? 'yes' : 'no'}`, `state     ${d.state === 'ready' ? stateText(h) : d.state}${(d.writesGivenUp?.length ?? 0) > 0 ? ', writes given up (below)' : ''}`, ...h.reasons.map(r => `          - ${r}`),
        ...[progressLine(h.repair, nodeName)].filter(l => l != null),
        ...usedBy,
        // where its copies are (the last inventory): which nodes' loss touches it
        // a node without a majority sees only its side: what it lacks is not known, not none (a tester read "none written yet")
        ...(h.copiesOn != null ? [`copies    ${Object.entries(h.copiesOn).sort((a, b) => b[1] - a[1]).map(([n, c]) => `${nodeName(n)} ${c}`).join(', ') || (h.noMajority != null ? 'none on the nodes in sight' : 'none written yet')} (objects of ${size(OBJECT_SIZE)}, at the last inventory${h.noMajority != null ? ` of this side only: ${h.noMajority}` : ''})`] : []),
        // for good, after repairs made it healthy again (an older agent's answer has none)
        ...(d.writesGivenUp ?? []).map(g => `given up  writes that may have been only on ${g.name}, forgotten ${g.at} (vgrid node forget --force): an object with no copy left reads as zeros`),
        `epoch     ${d.epoch}`, `nbd       ${d.nbd}`,
        repairLine(lr, nodeName, h.noMajority),
        `scrub     ${scrubLine(d.scrub, lr, nodeName)}`,
        // the newest few (a tester's 127 made one line of thousands of characters)
        `snapshots ${d.snapshots.length === 0 ? 'none' : `${d.snapshots.length > SNAPSHOTS_SHOWN ? `${d.snapshots.length}, the newest ${SNAPSHOTS_SHOWN}: ` : ''}${d.snapshots.slice(-SNAPSHOTS_SHOWN).map(x => `${x.name} (${x.createdAt}, ${size(x.sizeBytes)}${x.export != null ? `, read by a vgrid vol export on ${x.export.name}` : ''})`).join(', ')}${d.snapshots.length > SNAPSHOTS_SHOWN ? ' (all: vgrid vol info --json)' : ''}`}`,
        // an older agent's answer has no layers
        ...(d.layers != null ? [`layers    ${layersLine(d.layers)}`] : []),
        // an older agent's answer has no clonedFrom
        ...(d.parent != null ? [d.clonedFrom != null ? `clone of  ${d.clonedFrom}` : `parent    ${d.parent} (a clone of one of its snapshots)`] : [])].join('\n'))
    }
    case 'resize': {
      const [id, to] = need(2)
      const d = await api.request<VolumeView & { seenAfterRestartBy?: string[], unchanged?: true }>('PATCH', `/v1/volumes/${enc(id!)}`, { size: to })
      if (v.json === true) return json(d)
      if (d.unchanged === true) return out(`${d.path}: ${size(d.sizeBytes)}, unchanged (it is already so)`)
      out(`${d.path}: ${size(d.sizeBytes)}`)
      const vms = d.seenAfterRestartBy ?? []
      if (vms.length > 0) out(`  the running VM${vms.length === 1 ? '' : 's'} ${vms.join(', ')} see${vms.length === 1 ? 's' : ''} the new size after ${vms.length === 1 ? 'its' : 'their'} next start (QEMU cannot grow a disk it reaches over NBD while it runs)`)
      return
    }
    case 'mv': {
      const [id, to] = need(2)
      const d = await api.request<VolumeView>('PATCH', `/v1/volumes/${enc(id!)}`, { path: to })
      if (v.json === true) return json(d)
      // moved onto the path it has: nothing changed, and none of its VMs need be told (bb53)
      if (id === d.path) return out(`${d.path}: unchanged (it is already so)`)
      out(`${id!} -> ${d.path}`)
      // a VM names its disks by volume id: it keeps this volume under its new path, and a
      // volume moved to the old path is not its disk (bb50: a restore by clone and rename
      // booted the old disk, and nothing said so)
      const users = await api.request<VolumeUsersView>('GET', `/v1/volumes/${enc(d.id)}/users`).catch(() => null)
      for (const vm of users?.vms ?? []) out(`  VM ${vm.name} has it as a disk and keeps it under ${d.path} (a VM names its volumes by id, not path; to give it another volume: vgrid vm stop ${vm.name}, then vgrid vm update ${vm.name} --detach ${d.path} --attach PATH)`)
      return
    }
    case 'rm': {
      const r = await api.request<{ path: string, snapshots?: string[] }>('DELETE', `/v1/volumes/${enc(need(1)[0]!)}${v.snapshots === true ? '?snapshots=true' : ''}`)
      if (v.json === true) return json(r)
      return out(`removed ${r.path}${r.snapshots != null && r.snapshots.length > 0 ? ` and its snapshot${r.snapshots.length === 1 ? '' : 's'} ${r.snapshots.join(', ')}` : ''}`)
    }
    case 'snapshot': {
      // with --set, "rm" is the set snapshot's name (bb46: taken for a removal, --set ignored)
      if (p[0] === 'rm' && v.set !== true) {
        const [, id, name] = need(3)
        const d = await api.request<VolumeView>('DELETE', `/v1/volumes/${enc(id!)}/snapshots/${enc(name!)}`)
        return v.json === true ? json(d) : out(`removed snapshot ${id!}@${name!}`)
      }
      if (v.set === true) {
        const [name, ...vols] = need(2, true)
        // a path first is the one-volume form's order: the set's name comes first
        if (name!.startsWith('/')) throw new CliError(`vgrid vol snapshot --set takes the snapshot's name first, then the volumes: "${name!}" is a volume path, not a name\n${usageOf(sub)}`, 2)
        const r = await api.request<{ snapshot: string, volumes: VolumeView[] }>('POST', '/v1/snapshots', { name, volumes: vols })
        return v.json === true ? json(r) : out(`snapshot ${name!} of ${vols.join(', ')}`)
      }
      const [id, name] = need(2)
      const d = await api.request<VolumeView>('POST', `/v1/volumes/${enc(id!)}/snapshots`, { name })
      const s = d.snapshots.find(x => x.name === name)
      return v.json === true ? json(d) : out(`${d.path}@${name!}${s != null ? `\n  nbd: ${s.nbd} (read-only)` : ''}`)
    }
    case 'clone': {
      const [from, path] = need(2)
      const d = await api.request<VolumeView>('POST', '/v1/volumes', { path, from })
      return v.json === true ? json(d) : out(`${d.path}: clone of ${from!}, ${size(d.sizeBytes)} (id ${d.id})\n  nbd: ${d.nbd}`)
    }
    case 'repair': return await repair(api, need(1)[0]!, { scrub: v.scrub === true, force: v.force === true, json: v.json === true })
    case 'scrub': need(0); return await scrub(api, { now: v.now === true, json: v.json === true })
    case 'import': case 'export': {
      const [a, b] = need(2)
      return await copyFile(api, sub, sub === 'import' ? b! : a!, sub === 'import' ? a! : b!, v.format as string | undefined, v.force === true, v.json === true)
    }
    case undefined: throw new CliError(`vgrid vol: which subcommand?\n${USAGE}`, 2)
    case 'help': case '--help': case '-h': return out(USAGE)
    default: throw new CliError(`unknown subcommand "vol ${sub}"\n${USAGE}`, 2)
  }
}
