// CLI commands of GVS, clients of the local agent's API:
//   vgrid vol create|ls|info|resize|mv|rm|snapshot|clone|repair|import|export
// import and export run qemu-img convert against the volume's NBD export on this node
// (raw or qcow2 files; qemu-img does the format work and shows its own progress).
import { spawn } from 'node:child_process'
import { parse } from '../cli/args.ts'
import { ApiClient, CliError } from '../cli/client.ts'
import type { VolumeView } from './routes.ts'

const USAGE = `usage: vgrid vol create PATH --size SIZE [--replicas N] [--min-replicas N] [--thick] [--json]
       vgrid vol ls [PREFIX] [--json]
       vgrid vol info VOL [--json]
       vgrid vol resize VOL SIZE
       vgrid vol mv VOL NEWPATH
       vgrid vol rm VOL
       vgrid vol snapshot VOL NAME            (one volume)
       vgrid vol snapshot NAME VOL VOL...     (with --set: one consistent cut of several)
       vgrid vol snapshot rm VOL NAME
       vgrid vol clone VOL@SNAPSHOT NEWPATH
       vgrid vol repair VOL [--json]
       vgrid vol import FILE VOL [--format raw|qcow2]
       vgrid vol export VOL FILE [--format raw|qcow2]
VOL is a volume's path (/shop/db/data) or id; every command takes --api HOST:PORT`

const out = (s: string): void => { process.stdout.write(s + '\n') }
const json = (v: unknown): void => { out(JSON.stringify(v, null, 2)) }
const enc = encodeURIComponent

function size (b: number): string {
  for (const [u, n] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) if (b >= n) return `${(b / n).toFixed(b % n === 0 ? 0 : 1)}${u}`
  return `${b}`
}

function table (rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length)))
  return rows.map(r => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd()).join('\n')
}

const common = { api: { type: 'string' }, json: { type: 'boolean' } } as const

export async function vol (argv: string[]): Promise<void> {
  const [sub, ...rest] = argv
  const { values: v, positionals: p } = parse(rest, {
    ...common,
    size: { type: 'string' },
    replicas: { type: 'string' },
    'min-replicas': { type: 'string' },
    thick: { type: 'boolean' },
    format: { type: 'string' },
    set: { type: 'boolean' }
  }, USAGE, 300)
  const api = new ApiClient(v.api as string | undefined)
  const need = (n: number): string[] => {
    if (p.length < n) throw new CliError(`vgrid vol ${sub ?? ''}: missing arguments\n${USAGE}`, 2)
    return p
  }
  const int = (x: unknown, flag: string): number | undefined => {
    if (x == null) return undefined
    const n = Number(x)
    if (!Number.isInteger(n)) throw new CliError(`${flag} "${String(x)}" is not a whole number`, 2)
    return n
  }
  switch (sub) {
    case 'create': {
      const [path] = need(1)
      if (v.size == null) throw new CliError(`--size is required\n${USAGE}`, 2)
      const d = await api.request<VolumeView>('POST', '/v1/volumes', { path, size: v.size, replicas: int(v.replicas, '--replicas'), minReplicas: int(v['min-replicas'], '--min-replicas'), thin: v.thick !== true })
      return v.json === true ? json(d) : out(`${d.path}: ${size(d.sizeBytes)}, R=${d.replicas} (id ${d.id})\n  nbd: ${d.nbd}`)
    }
    case 'ls': case 'list': {
      const r = await api.request<{ volumes: VolumeView[] }>('GET', `/v1/volumes${p[0] != null ? `?prefix=${enc(p[0])}` : ''}`)
      if (v.json === true) return json(r)
      if (r.volumes.length === 0) return out('no volumes')
      return out(table([['PATH', 'SIZE', 'R', 'STATE', 'ID'], ...r.volumes.map(x => [x.path, size(x.sizeBytes), String(x.replicas), x.state, x.id])]))
    }
    case 'info': {
      const d = await api.request<VolumeView>('GET', `/v1/volumes/${enc(need(1)[0]!)}`)
      if (v.json === true) return json(d)
      return out([`path      ${d.path}`, `id        ${d.id}`, `size      ${size(d.sizeBytes)} (${d.sizeBytes} bytes)`, `replicas  ${d.replicas} (writes need ${d.minReplicas})`,
        `thin      ${d.thin ? 'yes' : 'no'}`, `state     ${d.state}`, `epoch     ${d.epoch}`, `nbd       ${d.nbd}`,
        `repair    ${d.lastRepair == null ? 'never run here' : `${d.lastRepair.health} at ${d.lastRepair.at}: ${d.lastRepair.copied} copied, ${d.lastRepair.failed} failed`}`].join('\n'))
    }
    case 'resize': {
      const [id, to] = need(2)
      const d = await api.request<VolumeView>('PATCH', `/v1/volumes/${enc(id!)}`, { size: to })
      return out(`${d.path}: ${size(d.sizeBytes)}`)
    }
    case 'mv': {
      const [id, to] = need(2)
      const d = await api.request<VolumeView>('PATCH', `/v1/volumes/${enc(id!)}`, { path: to })
      return out(`${id!} -> ${d.path}`)
    }
    case 'rm': {
      const r = await api.request<{ path: string }>('DELETE', `/v1/volumes/${enc(need(1)[0]!)}`)
      return out(`removed ${r.path}`)
    }
    case 'snapshot': {
      if (p[0] === 'rm') {
        const [, id, name] = need(3)
        await api.request('DELETE', `/v1/volumes/${enc(id!)}/snapshots/${enc(name!)}`)
        return out(`removed snapshot ${id!}@${name!}`)
      }
      if (v.set === true) {
        const [name, ...vols] = need(2)
        await api.request('POST', '/v1/snapshots', { name, volumes: vols })
        return out(`snapshot ${name!} of ${vols.join(', ')}`)
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
    case 'repair': {
      const r = await api.request<{ volume: string, done: number, total: number, failed: number, bytes: number, health: string, errors: string[] }>('POST', `/v1/volumes/${enc(need(1)[0]!)}/repair`)
      if (v.json === true) return json(r)
      out(`${r.volume}: ${r.health}; copied ${r.done - r.failed}/${r.total} objects (${size(r.bytes)}), ${r.failed} failed`)
      for (const e of r.errors) out(`  ${e}`)
      return
    }
    case 'import': case 'export': {
      const [a, b] = need(2)
      const volId = sub === 'import' ? b! : a!
      const file = sub === 'import' ? a! : b!
      const d = await api.request<VolumeView>('GET', `/v1/volumes/${enc(volId)}`)
      const fmt = (v.format as string | undefined) ?? (file.endsWith('.qcow2') ? 'qcow2' : 'raw')
      if (fmt !== 'raw' && fmt !== 'qcow2') throw new CliError(`--format "${fmt}": raw or qcow2`, 2)
      // -n: the volume exists (qemu-img must not try to create it); -p: progress
      const args = sub === 'import'
        ? ['convert', '-p', '-n', '-f', fmt, '-O', 'raw', file, d.nbd]
        : ['convert', '-p', '-f', 'raw', '-O', fmt, d.nbd, file]
      await qemuImg(args)
      return out(sub === 'import' ? `imported ${file} into ${d.path}` : `exported ${d.path} to ${file}`)
    }
    case undefined: case 'help': case '--help': case '-h': return out(USAGE)
    default: throw new CliError(`unknown subcommand "vol ${sub}"\n${USAGE}`, 2)
  }
}

async function qemuImg (args: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const p = spawn('qemu-img', args, { stdio: ['ignore', 'inherit', 'inherit'] })
    p.once('error', err => { reject(new CliError(`qemu-img could not run (install qemu-utils): ${err.message}`, 1)) })
    p.once('exit', code => {
      if (code === 0) resolve()
      else reject(new CliError(`qemu-img ${args[0] ?? ''} failed (exit ${String(code)})`, 1))
    })
  })
}
