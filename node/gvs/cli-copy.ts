// The long copies of `vgrid vol`, with progress (a bar on a terminal, plain lines
// otherwise; see progress.ts):
// - repair and scrub run in the agent: the CLI starts one (POST ... {wait: false},
//   202) and polls its progress endpoint (GET /v1/volumes/:id/repair, GET
//   /v1/gvs/scrub) every half second until it is done, then prints the report;
// - import and export run here: qemu-img convert against the volume's NBD export on
//   this node (raw or qcow2; qemu-img does the format work), its own -p percentage
//   read from its output (it knows what it skips as sparse).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { accessSync, closeSync, constants, existsSync, fchmodSync, fstatSync, lstatSync, openSync, readlinkSync, readSync, rmSync, statSync, type Stats } from 'node:fs'
import { basename, dirname, extname, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { type ApiClient, CliError } from '../cli/client.ts'
import type { RepairStatusView, VolumeUsersView, VolumeView } from './routes.ts'
import type { ScrubStatus } from './scrub-schedule.ts'
import type { ScrubReport } from './scrub.ts'
import { progress, qemuImgPercent } from './progress.ts'
import { bytesText, enc, json, out, size } from './cli-format.ts'
import { sayWriters } from './say-writers.ts'
import { kernelFsOf } from '../data-dir.ts'
import { groupId } from '../groups.ts'
import { tiedArgv, which } from '../netns/netns.ts'

const POLL_MS = 500

export async function repair (api: ApiClient, vol: string, o: { scrub: boolean, force?: boolean, json: boolean }): Promise<void> {
  const forced = o.force === true ? { force: true } : {}
  if (o.json) {
    const r = await api.request<{ health?: string }>('POST', `/v1/volumes/${enc(vol)}/repair`, { wait: true, scrub: o.scrub, ...forced })
    json(r)
    // as without --json: a script must not take a volume left degraded for repaired
    if (r.health != null && r.health !== 'healthy') process.exitCode = 1
    return
  }
  const asked = Date.now()
  let st = await api.request<RepairStatusView>('POST', `/v1/volumes/${enc(vol)}/repair`, { wait: false, scrub: o.scrub, ...forced })
  const bar = progress(`repair ${st.volume}`, { format: (v, t) => `${v}/${t} copies` })
  while (st.running != null) {
    const r = st.running
    // no plan yet, or nothing to copy: no "0% (0/0 copies)"
    if (r.total > 0) bar.update(r.done, r.total, `${size(r.bytes)}${r.failed > 0 ? `, ${r.failed} failed` : ''}`)
    await sleep(POLL_MS)
    st = await api.request<RepairStatusView>('GET', `/v1/volumes/${enc(vol)}/repair`)
  }
  const l = st.last
  if (l == null || Date.parse(l.at) < asked - 1000) { bar.stop(); throw new CliError(`the repair of ${st.volume} ended without a report (the agent may have stopped)`, 1) }
  if (l.copied + l.failed > 0) bar.update(l.copied + l.failed, l.copied + l.failed)
  const short = l.short ?? 0
  const sound = l.failed === 0 && l.lost === 0 && short === 0
  const freed = (l.freed ?? 0) > 0 ? `; freed ${l.freed} surplus cop${l.freed === 1 ? 'y' : 'ies'} (on nodes that are no longer holders)` : ''
  // too few live nodes to hold R copies: nothing to copy, and not repaired (bb33: "every object has its copies", exit 0)
  const few = short > 0 ? `, ${short} object${short === 1 ? '' : 's'} short of ${st.replicas == null ? 'R' : `R=${st.replicas}`} copies: too few live nodes with a disk to hold them (start or add nodes)` : ''
  bar.stop(sound && l.copied === 0
    ? `${st.volume}: nothing to copy, every object has its copies${freed}`
    : `${st.volume}: ${sound ? 'repaired' : 'still degraded'}; copied ${l.copied} objects (${bytesText(l.bytes)}), ${l.failed} failed${l.lost > 0 ? `, ${l.lost} with no live copy` : ''}${few}${freed}`)
  for (const s of l.scrubbed ?? []) out(`  scrub: object ${s.index} of ${s.volume ?? s.layer} on ${s.name ?? s.node} was damaged; ${s.healed ? 'rewritten from a sound copy' : `not rewritten: ${s.error ?? ''}`}`)
  if (o.scrub && (l.scrubbed ?? []).length === 0) out('  scrub: every copy verified sound')
  // an unrewritten scrub finding is in both lists: said once, above
  for (const e of l.errors) if (!(e.startsWith('scrub: object ') && e.includes(' is damaged and was not rewritten'))) out(`  ${e}`)
  // the exit code says it too: a script must not take a volume left degraded for repaired
  if (l.failed > 0 || l.lost > 0 || short > 0 || (l.unsound ?? 0) > 0) process.exitCode = 1
}

export async function scrub (api: ApiClient, o: { now: boolean, json: boolean }): Promise<void> {
  if (!o.now) {
    const s = await api.request<ScrubStatus>('GET', '/v1/gvs/scrub')
    if (o.json) return json(s)
    const l = s.last
    out(`scrub of this node's copies: every ${Math.round(s.intervalMs / 3600_000 * 10) / 10} h; next ${s.next == null ? 'not scheduled' : new Date(s.next).toISOString()}`)
    if (s.running != null) out(`running: ${s.running.objects}/${s.running.total} objects, ${s.running.bad} bad, ${s.running.repaired} rewritten`)
    return out(l == null ? 'last: never' : `last: ${new Date(l.finishedAt).toISOString()}: ${l.objects} objects checked, ${l.bad} bad, ${l.repaired} rewritten${l.unrepaired.length > 0 ? `, ${l.unrepaired.length} not rewritten` : ''}`)
  }
  if (o.json) return json(await api.request<ScrubReport>('POST', '/v1/gvs/scrub', { wait: true }))
  let s = await api.request<ScrubStatus>('POST', '/v1/gvs/scrub', { wait: false })
  // the scrub asked for (or joined) started then, in the agent's clock (rv43: this one's may differ)
  const started = s.running?.startedAt ?? 0
  const bar = progress('scrub', { format: (v, t) => `${v}/${t} objects` })
  while (s.running != null || s.last == null || s.last.startedAt < started) {
    // it ended in an error: said, not waited for (bb41: it waited for ever)
    if (s.running == null && s.failed != null && s.failed.startedAt >= started) { bar.stop(); throw new CliError(`scrub failed: ${s.failed.error}`) }
    // its total is known once the scrub has listed the objects (a 0/0 line says nothing)
    if (s.running != null && s.running.total > 0) bar.update(s.running.objects, s.running.total, s.running.bad > 0 ? `${s.running.bad} bad` : '')
    await sleep(POLL_MS)
    s = await api.request<ScrubStatus>('GET', '/v1/gvs/scrub')
  }
  const l = s.last
  bar.update(l.objects, l.total)
  bar.stop(`scrub: ${l.objects} objects checked, ${l.bad} bad, ${l.repaired} rewritten`)
  for (const u of l.unrepaired) out(`  object ${u.index} of ${u.volume ?? u.layer}: not rewritten: ${u.error}`)
  if (l.pastEnd != null) out(`  ${l.pastEnd.count} ${l.pastEnd.count === 1 ? 'object lies' : 'objects lie'} past the end of every volume that reads ${l.pastEnd.count === 1 ? 'it' : 'them'}, left unchecked: no write this node knows of reaches there (${l.pastEnd.first.join(', ')}${l.pastEnd.count > l.pastEnd.first.length ? ', ...' : ''})`)
  // damage left behind is a failure a script must see (as for repair)
  if (l.unrepaired.length > 0) process.exitCode = 1
}

export async function copyFile (api: ApiClient, sub: 'import' | 'export', ref: string, file: string, format: string | undefined, force = false, asJson = false): Promise<void> {
  checkFile(sub, file)
  const fmt = imageFormat(sub, file, format)
  // an import's image is opened once, and read by that descriptor alone, qemu-img's reads
  // too (as /dev/fd/3): read by its path twice, it could be another file the second time
  // (rv47: a qcow2 swapped after its check for one naming /etc/shadow as its data file)
  const image = sub === 'import' ? openImage(file, fmt, ref) : undefined
  try {
    await copy(api, sub, ref, file, fmt, format, force, asJson, image)
  } finally {
    if (image != null) closeSync(image)
  }
}

async function copy (api: ApiClient, sub: 'import' | 'export', ref: string, file: string, fmt: 'raw' | 'qcow2', format: string | undefined, force: boolean, asJson: boolean, image: number | undefined): Promise<void> {
  // with --json, stdout holds the one answer: progress and notes go to stderr (bb38: text on success)
  const note = asJson ? (s: string): void => { process.stderr.write(s + '\n') } : out
  // an import's image is what its format says before anything is written (qemu-img's
  // "Image is not in qcow2 format" came after the volume was said to "may hold part of" it)
  if (sub === 'import') checkImage(file, fmt, format != null, ref, image)
  // VOL@SNAP: a snapshot, which exports (read-only) and never imports
  const at = ref.indexOf('@')
  const [volId, snapName] = at < 0 ? [ref, undefined] : [ref.slice(0, at), ref.slice(at + 1)]
  const d = await api.request<VolumeView>('GET', `/v1/volumes/${enc(volId)}`).catch((err: unknown) => {
    // an import goes into a volume made first (its size and R are the user's to choose)
    if (sub === 'import' && err instanceof CliError && err.code === 'not_found') throw new CliError(`${err.message}: an import writes into a volume that exists; make it first (vgrid vol create ${volId} --size SIZE, at least the image's size)`, 1, { code: 'not_found' })
    throw err
  })
  const snap = snapName == null ? undefined : d.snapshots.find(s => s.name === snapName)
  if (snapName != null && snap == null) throw new CliError(`${d.path} has no snapshot "${snapName}"${d.snapshots.length > 0 ? ` (it has ${d.snapshots.map(s => s.name).join(', ')})` : ''}`, 1)
  if (snap != null && sub === 'import') throw new CliError(`${d.path}@${snap.name} is a snapshot: read-only; import into a volume (or a clone of it: vgrid vol clone)`, 1)
  // an export never overwrites a file unasked (qemu-img would, silently)
  if (sub === 'export' && !force && existsSync(file) && statSync(file).isFile()) throw new CliError(`${file} exists: give --force to overwrite it, or another file`, 1, { code: 'file_exists' })
  // an image bigger than the volume: said with both sizes (qemu-img only says "smaller")
  const imageBytes = sub === 'import' ? await imageSize(file, fmt, d.path, image!) : undefined
  if (imageBytes != null && imageBytes > d.sizeBytes) throw new CliError(`${file} is ${imageBytes} bytes${fmt === 'qcow2' ? ' (its virtual size)' : ''}, more than ${d.path}'s ${d.sizeBytes}: grow the volume first (vgrid vol resize ${d.path} SIZE)`, 1)
  // an import is a writer: never a second one under a VM that runs from the volume, or
  // beside another NBD writer (a volume has one writer at a time)
  if (sub === 'import') refuseInUse(d.path, await api.request<VolumeUsersView>('GET', `/v1/volumes/${enc(volId)}/users`))
  // an export of a volume copies a snapshot taken now, so the file is one point in time
  // (as the disk after a power cut), not a mix of before and after
  // a file made by this export and left half-written by a failure is removed (one there before, given --force, is said to be overwritten in part)
  const existed = sub === 'export' && existsSync(file)
  // the file qemu-img writes: made here, readable by root alone (bb48: 0644, every user
  // could read the disk), or one there before (--force) made so; never through a link,
  // and written by that descriptor alone (rv47: reopened by its path, a link planted
  // meanwhile in a directory another user may write sent root's writes elsewhere);
  // opened before the export's snapshot is taken, which a refusal here left behind (rv48)
  const target = sub === 'export' ? openTarget(file, existed) : undefined
  let temp: Awaited<ReturnType<typeof tempSnapshot>> | undefined
  let quiet = true
  try {
    const users = sub === 'export' && snap == null ? inUse(await api.request<VolumeUsersView>('GET', `/v1/volumes/${enc(volId)}/users`)) : null
    // every export of a volume reads a snapshot taken at its start, in use or not: a
    // writer the look above misses (an NBD client connected but not yet writing, one that
    // connects for each write) made the file a mix of before and after (bb50, high); said
    // when the volume is in use, quietly otherwise
    temp = sub === 'export' && snap == null ? await tempSnapshot(api, d, users, note) : undefined
    quiet = users == null
  } catch (err) {
    if (target != null) {
      closeSync(target)
      if (!existed) rmSync(file, { force: true })
    }
    throw err
  }
  const source = snap ?? temp
  const nbd = source?.nbd ?? d.nbd
  // a quiet snapshot (the volume not in use) is not named: the copy is of the volume as it was
  const name = source == null || (source === temp && quiet) ? d.path : `${d.path}@${source.name}`
  const tempName = temp == null ? '' : `${d.path}@${temp.name}`
  let removed = ''
  /** where the zeroed tail past a smaller image began */
  let zeroedFrom: number | undefined
  try {
    await convert(sub, fmt, file, nbd, name, image ?? target!)
    // the volume holds the image and nothing else: what lay past a smaller image's end
    // (an older disk's data, its backup GPT header) is zeroed (and unmapped)
    if (sub === 'import' && imageBytes != null && imageBytes < d.sizeBytes) {
      zeroedFrom = imageBytes
      for (const cmds of zeroCommands(imageBytes, d.sizeBytes)) await qemuImg(['-f', 'raw', ...cmds.flatMap(c => ['-c', c]), nbd], undefined, 'qemu-io')
      removed = ` (the ${d.sizeBytes - imageBytes} bytes past the image's end, to ${d.sizeBytes}, zeroed)`
    }
  } catch (err) {
    if (!(err instanceof CopyInterrupted)) throw await copyFailed(api, err, sub, file, name, d.id, existed)
    // an export cut short is no image: the part written is removed, not left to pass for one
    let kind: 'none' | 'file' | 'other' = 'none'
    try { kind = lstatSync(file).isFile() ? 'file' : 'other' } catch {}
    if (sub === 'export' && kind === 'file') rmSync(file, { force: true })
    const left = sub === 'import' ? `${name} holds part of ${file}; import it again to complete it` : kind === 'file' ? `the partial ${file} was removed` : kind === 'none' ? `nothing was written to ${file}` : `${file} holds part of ${name}`
    throw new CliError(`${err.message}: ${left}`, 130)
  } finally {
    if (target != null) closeSync(target)
    if (temp != null) {
      // renewed until removed: the agent removes one whose lease ran out by itself
      removed = await api.request('DELETE', `/v1/volumes/${enc(d.id)}/snapshots/${enc(temp.name)}`).then(() => quiet ? '' : ' (the snapshot is removed)', async (err: Error) => {
        // gone already: the volume with its snapshots (removed during the copy: bb26 was
        // told to remove the snapshot by hand), or the snapshot alone (its lease ran out)
        if ((err as CliError).code === 'not_found') {
          const volumeGone = await api.request('GET', `/v1/volumes/${enc(d.id)}`).then(() => false, (e: Error) => (e as CliError).code === 'not_found')
          process.stderr.write(volumeGone ? `vgrid: ${d.path} and its snapshots were removed during the ${sub}\n` : `vgrid: the export's snapshot ${tempName} was removed already (its lease ran out, or it was removed by hand)\n`)
          return ''
        }
        // (bb50: its agent gone, another node removes it once the hold the document keeps runs out)
        process.stderr.write(`vgrid: the export's snapshot ${tempName} was not removed (${err.message}): the agent removes it by itself once its lease runs out, or, were that agent gone, another node within about 5 minutes (vgrid vol snapshot rm ${d.path} ${temp.name} removes it now)\n`)
        return ''
      })
      temp.stop()
    }
  }
  if (asJson) return json({ [sub === 'import' ? 'imported' : 'exported']: file, volume: d.path, snapshot: source == null || (source === temp && quiet) ? null : source.name, format: fmt, ...(zeroedFrom != null ? { zeroed: { from: zeroedFrom, to: d.sizeBytes } } : {}), ...(temp != null && !quiet ? { snapshotRemoved: removed !== '' } : {}) })
  out(sub === 'import' ? `imported ${file} into ${name}${removed}` : `exported ${name} to ${file}${removed}`)
}

/** the most one qemu-io write may cover (it refuses over 2 GiB - 512 bytes: bb38's 8 GiB volume under a 2 GiB image) */
const ZERO_CHUNK = 2 ** 30
/** qemu-io commands a run: argv stays small for a volume of many TiB */
const ZERO_COMMANDS_A_RUN = 256

/** qemu-io's commands that zero (and unmap) `from`..`to`, a chunk each, in runs (pure) */
export function zeroCommands (from: number, to: number): string[][] {
  const runs: string[][] = []
  let run: string[] = []
  for (let at = from; at < to; at += ZERO_CHUNK) {
    run.push(`write -z -u ${at} ${Math.min(ZERO_CHUNK, to - at)}`)
    if (run.length === ZERO_COMMANDS_A_RUN) { runs.push(run); run = [] }
  }
  if (run.length > 0) runs.push(run)
  return runs
}

/**
 * A copy that failed (not interrupted): an export's half-written file is no image, so
 * one it made is removed (a tester found a full-size file left, said nowhere); and a
 * volume that is not healthy says why, as the read errors qemu-img saw do not.
 */
export async function copyFailed (api: ApiClient, err: unknown, sub: 'import' | 'export', file: string, name: string, volId: string, existed: boolean): Promise<unknown> {
  if (!(err instanceof Error) || (err instanceof CliError && err.exitCode === 2)) return err
  const health = await api.request<VolumeView>('GET', `/v1/volumes/${enc(volId)}`).then(v => v.state === 'ready' && v.health.state !== 'healthy' ? `; ${v.path} is ${v.health.state}${v.health.reasons.length > 0 ? `: ${v.health.reasons[0]!}` : ''}` : '', (e: Error) =>
    // the agent serving the copy stopped during it (bb26: a bare "Input/output error" said nothing of it)
    (e as CliError).code === 'not_found' ? `; its volume was removed during the ${sub}` : `; asking the agent about ${name} afterwards failed (${e.message}): it may have stopped during the ${sub}`)
  let left = ''
  // qemu-img convert opens the image and the volume before it writes: one it could not open wrote nothing
  if (sub === 'import') left = /Could not open '/.test(err.message) ? `: nothing was written to ${name}` : `: ${name} may hold part of ${file}; import it again once the cause is fixed`
  else {
    let isFile = false
    try { isFile = lstatSync(file).isFile() } catch {}
    if (isFile && !existed) { rmSync(file, { force: true }); left = `: the partial ${file} was removed` } else if (isFile) left = `: ${file} was overwritten in part and holds no whole image`
  }
  return new CliError(`${err.message}${left}${health}`, err instanceof CliError ? err.exitCode : 1, err instanceof CliError ? { code: err.code } : {})
}

/** the file side, checked before anything starts: an import's image is a file or block device; an export's folder exists */
function checkFile (sub: 'import' | 'export', file: string): void {
  // not stdin or stdout, which a copy of a whole disk cannot go through (bb50: a file named "-" was written)
  if (file === '-') throw new CliError(`"-": vgrid vol ${sub} ${sub === 'import' ? 'reads an image file, not stdin' : 'writes an image file, not stdout'}; give the file's path (./- for a file of that name)`, 2)
  let st: Stats | undefined
  try { st = statSync(file) } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new CliError(`${file}: ${(err as Error).message}`, 1)
  }
  if (sub === 'import') {
    if (st == null) throw new CliError(`${file}: no such file (import reads an image file)`, 1)
    if (!st.isFile() && !st.isBlockDevice()) throw new CliError(`${file} is ${st.isDirectory() ? 'a directory' : 'not a file or block device'}: import reads an image file`, 1)
    return
  }
  if (st?.isDirectory() === true) throw new CliError(`${file} is a directory: export writes an image file (give its name)`, 1)
  // a path ending in "/" names a directory, there or not (bb54: a raw EISDIR)
  if (file.endsWith('/')) throw new CliError(`${file} names a directory: export writes an image file (give its name, e.g. ${file}disk.raw)`, 1)
  // never through a link, dangling or not (bb48: a user's link in /tmp had root's export write a file where the link pointed)
  let link: string | undefined
  try { if (lstatSync(file).isSymbolicLink()) link = readlinkSync(file) } catch {}
  if (link != null) throw new CliError(`${file} is a symbolic link (to ${link}): export writes no file through a link; give the path of the file itself`, 1)
  // (bb35: --force over /proc/version failed, then said it was "overwritten in part")
  const kernel = kernelFsOf(file)
  if (kernel != null) throw new CliError(`${file} is on the kernel's ${kernel} file system, which cannot hold an image: export to a file on a disk`, 1)
  // a character device, fifo or socket cannot take an image (qemu-img said "Cannot grow device files" after starting)
  if (st != null && !st.isFile() && !st.isBlockDevice()) throw new CliError(`${file} is not a file or block device: export writes an image file`, 1)
  const dir = dirname(resolve(file))
  if (st == null && !existsSync(dir)) throw new CliError(`${dir} does not exist: export writes ${basename(file)} there`, 1)
}

/** the formats a file's name may say, which vgrid neither writes nor reads (qemu-img's, and archives) */
const FOREIGN: Record<string, string> = {
  vmdk: 'vmdk', vdi: 'vdi', vhd: 'vhd', vpc: 'vhd', vhdx: 'vhdx', qed: 'qed', qcow: 'qcow (version 1)', cow: 'cow', dmg: 'dmg', hdd: 'parallels', parallels: 'parallels', bochs: 'bochs', cloop: 'cloop', luks: 'luks', vvfat: 'vvfat', ova: 'ova (an archive)', ovf: 'ovf (a descriptor)', gz: 'gzip', xz: 'xz', bz2: 'bzip2', zst: 'zstd', lz4: 'lz4', zip: 'zip', tar: 'tar', tgz: 'tar.gz'
}

/**
 * The format of a vol import/export file: --format when given (raw or qcow2, else a usage
 * error); else its name's: .qcow2 is qcow2, and .raw, .img, none or one that names no
 * image format (.bin, .iso, a date) raw. A name that says another format is refused, not
 * taken for raw (a tester's export to x.vmdk wrote a raw file under that name).
 */
export function imageFormat (sub: 'import' | 'export', file: string, format: string | undefined): 'raw' | 'qcow2' {
  if (format != null) {
    if (format !== 'raw' && format !== 'qcow2') throw new CliError(`--format "${format}": raw or qcow2`, 2)
    return format
  }
  const ext = extname(basename(file)).slice(1).toLowerCase()
  if (ext === 'qcow2') return 'qcow2'
  const says = FOREIGN[ext]
  if (says == null) return 'raw'
  const to = sub === 'export' ? 'write' : 'read'
  const fix = sub === 'export'
    ? `give --format raw or --format qcow2 to write that under this name, or name it .raw, .img or .qcow2`
    : `convert it first (qemu-img convert -O qcow2 ${file} OUT.qcow2), or give --format raw or --format qcow2 if it is one of those`
  throw new CliError(`${file}: its name says ${says}, which vgrid does not ${to} (it ${to}s raw and qcow2): ${fix}`, 2)
}

/** a qcow2 image's first bytes */
const QCOW2_MAGIC = Buffer.from('QFI\xfb', 'latin1')

/**
 * Before an import writes anything: a qcow2 image starts with its magic; a file taken for
 * raw by its name that starts with it is a qcow2 image (imported as raw it would be a
 * disk of qcow2's metadata). A raw file given --format raw is taken as it is.
 */
export function checkImage (file: string, fmt: 'raw' | 'qcow2', given: boolean, vol: string, opened?: number): void {
  const head = Buffer.alloc(QCOW2_MAGIC.length)
  let n = 0
  let fd: number | undefined
  try {
    fd = opened ?? openSync(file, 'r')
    n = readSync(fd, head, 0, head.length, 0)
  } catch (err) {
    throw new CliError(`${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): nothing was written to ${vol}`, 1)
  } finally { if (fd != null && opened == null) closeSync(fd) }
  const qcow2 = n === head.length && head.equals(QCOW2_MAGIC)
  if (fmt === 'qcow2' && !qcow2) throw new CliError(`${file} is not a qcow2 image (it does not start as one): ${given ? '' : 'its name says qcow2; '}--format raw imports it as raw; nothing was written to ${vol}`, 2)
  if (fmt === 'raw' && qcow2 && !given) throw new CliError(`${file} is a qcow2 image (it starts as one), not raw as its name says: --format qcow2 imports it (--format raw its bytes as they are); nothing was written to ${vol}`, 2)
}

/** an image's size as a disk (a raw file's length, a qcow2's virtual size); a qcow2 that qemu-img cannot read is refused here, before anything is written */
async function imageSize (file: string, fmt: string, vol: string, fd: number): Promise<number | undefined> {
  // a raw file's length; a block device's stat says 0 bytes (its size is qemu-img's to tell)
  if (fmt === 'raw' && !fstatSync(fd).isBlockDevice()) return fstatSync(fd).size
  let info: QcowInfo
  try {
    info = JSON.parse(await qemuImg(['info', '--output=json', '-f', fmt, FD_PATH], undefined, 'qemu-img', fd)) as QcowInfo
  } catch (err) {
    if (err instanceof CopyInterrupted || !(err instanceof Error)) throw err
    throw new CliError(`${file} cannot be read as ${fmt}: ${err.message}; nothing was written to ${vol}`, 1)
  }
  const other = otherFileOf(info)
  if (other != null) throw new CliError(`${file} reads ${other}: vgrid imports self-contained images only (that file would be read with your rights and copied into the volume); make one first (qemu-img convert -O qcow2 ${file} WHOLE.qcow2) and import that; nothing was written to ${vol}`, 1, { code: 'image_not_self_contained' })
  const v = info['virtual-size']
  return typeof v === 'number' ? v : undefined
}

/** what `qemu-img info --output=json` says of a qcow2 that matters here */
interface QcowInfo { 'virtual-size'?: unknown, 'backing-filename'?: unknown, 'full-backing-filename'?: unknown, 'format-specific'?: { data?: { 'data-file'?: unknown } } }

/**
 * The other file a qcow2 image reads its data from, said for people, or null (pure): a
 * backing file, or an external data file. Followed by qemu-img, they copied any file the
 * importer may read into the volume (bb48: a backing file of /etc/shadow).
 */
export function otherFileOf (info: QcowInfo): string | null {
  // as its header says it (read through /dev/fd/3, a relative name's full one is under /dev/fd)
  const backing = info['backing-filename'] ?? info['full-backing-filename']
  if (typeof backing === 'string' && backing !== '') return `a backing file, ${backing}`
  const data = info['format-specific']?.data?.['data-file']
  if (typeof data === 'string' && data !== '') return `an external data file, ${data}`
  return null
}

/** who uses the volume, said in a few words, or null when no VM runs from it and no NBD client writes it */
function inUse (u: VolumeUsersView): string | null {
  const why = [...u.vms.filter(v => v.running).map(v => `VM "${v.name}" runs from it`), ...u.writers.map(w => `NBD writers: ${sayWriters(w)}`)]
  return why.length === 0 ? null : why.join(', ')
}

/**
 * A snapshot of `d` for one export: the agent names it (export-<UTC time>-<random>, so
 * that a user who sees it knows what it is) and leases it to this export, which renews
 * the lease every third of its length until `stop` is called. Once a lease runs out (this
 * process killed, even by SIGKILL) and no NBD session reads the snapshot, the agent
 * removes it (export-sweeper.ts).
 */
async function tempSnapshot (api: ApiClient, d: VolumeView, users: string | null, note: (s: string) => void): Promise<{ name: string, nbd: string, stop: () => void } | undefined> {
  let r: { snapshot: string, leaseMs: number, volume: VolumeView }
  const take = async (body?: { quiet: true }): Promise<typeof r> => await api.request<typeof r>('POST', `/v1/volumes/${enc(d.id)}/export-snapshot`, body)
  try {
    // quiet: the volume was not seen in use, and a vol rm meanwhile takes the snapshot with it (rv49);
    // an agent of an earlier release takes no fields: asked plainly then
    r = users != null ? await take() : await take({ quiet: true }).catch(async (err: unknown) => { if (err instanceof CliError && err.exitCode === 2 && /quiet/.test(err.message)) return await take(); throw err })
  } catch (err) {
    if (users != null) throw new CliError(`${d.path} is in use (${users}) and a snapshot to export from could not be taken: ${(err as Error).message}`, 1)
    // no writer seen at the start (an agent of an earlier release, a grid without a majority): as it is, said
    process.stderr.write(`vgrid: no snapshot of ${d.path} could be taken to export from (${(err as Error).message}): exporting the volume as it is, which no writer used at the start; one that writes during the export would make the file a mix of before and after\n`)
    return undefined
  }
  const s = r.volume.snapshots.find(x => x.name === r.snapshot)
  if (s == null) throw new CliError(`${d.path}: the snapshot ${r.snapshot} taken to export from is not in the answer`, 1)
  let warned = false
  const renew = setInterval(() => {
    api.request('POST', `/v1/volumes/${enc(d.id)}/snapshots/${enc(s.name)}/lease`).catch((err: Error) => {
      // the copy reads on: the agent keeps the snapshot while an NBD session reads it
      if (!warned) process.stderr.write(`vgrid: the lease on the export's snapshot ${d.path}@${s.name} could not be renewed (${err.message}); the copy goes on\n`)
      warned = true
    })
  }, Math.max(1000, Math.floor(r.leaseMs / 3)))
  if (users != null) note(`${d.path} is in use (${users}): exporting snapshot ${d.path}@${s.name}, taken now and removed afterwards`)
  return { name: s.name, nbd: s.nbd, stop: () => { clearInterval(renew) } }
}

async function convert (sub: 'import' | 'export', fmt: string, file: string, nbd: string, name: string, fd: number): Promise<void> {
  checkSocketAccess(nbd)
  // -n: the volume exists (qemu-img must not try to create it); -p: progress. The file by
  // its descriptor (FD_PATH); a qcow2 opened with no backing file whatever its header says
  // (QEMU's `file` driver refuses a block device: rv48, a qcow2 on a logical volume)
  const protocol = sub === 'import' && fstatSync(fd).isBlockDevice() ? 'host_device' : 'file'
  const source = fmt === 'qcow2' ? `json:${JSON.stringify({ driver: 'qcow2', file: { driver: protocol, filename: FD_PATH }, backing: null })}` : FD_PATH
  const args = sub === 'import'
    ? ['convert', '-p', '-n', ...fmt === 'qcow2' ? [] : ['-f', fmt], '-O', 'raw', source, nbd]
    : ['convert', '-p', '-f', 'raw', '-O', fmt, nbd, FD_PATH]
  const bar = progress(`${sub} ${sub === 'import' ? `${file} -> ${name}` : `${name} -> ${file}`}`)
  try {
    await qemuImg(args, pct => { bar.update(Math.floor(pct), 100) }, 'qemu-img', fd)
  } finally { bar.stop() }
}

/** the image file as qemu-img opens it: the descriptor the CLI opened, its fd 3 */
const FD_PATH = '/dev/fd/3'

/** the caller's uid: root, or a member of the vgrid group running the CLI as itself */
const caller = (): number => process.geteuid?.() ?? 0

/**
 * An import's image, opened once for every read (checkImage, imageSize, convert): a
 * regular file or a block device (a FIFO swapped in after the path's check would hang
 * the open: O_NONBLOCK, then checked on the descriptor: rv48). A qcow2 must be the
 * caller's or root's and writable by its owner alone, a block device too (rv48: one of
 * group disk escaped the check): its header names the files it reads (checked once,
 * otherFileOf), and another user who may write it could change that header between the
 * check and the copy (rv47). The caller's own file reads nothing the caller could not
 * (a vgrid group member's import runs as that member: rv48, refused before).
 */
function openImage (file: string, fmt: 'raw' | 'qcow2', vol: string): number {
  let fd: number
  try { fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK) } catch (err) {
    throw new CliError(`${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): nothing was written to ${vol}`, 1)
  }
  const st = fstatSync(fd)
  if (!st.isFile() && !st.isBlockDevice()) {
    closeSync(fd)
    throw new CliError(`${file} is not a file or block device (it changed since it was looked at): import reads an image file; nothing was written to ${vol}`, 1)
  }
  const me = caller()
  const who = fmt === 'qcow2' ? othersWhoMayWrite(st, me, groupId('disk')) : undefined
  if (who != null) {
    closeSync(fd)
    const copyTo = me === 0 ? '/root/image.qcow2' : '~/image.qcow2'
    throw new CliError(`${file} may be changed by ${who} while it is read: a qcow2's header names files it reads, and vgrid imports one only ${me === 0 ? 'root' : 'you or root'} may write; copy it first (install -m 600 ${file} ${copyTo}) and import the copy; nothing was written to ${vol}`, 1, { code: 'image_not_roots' })
  }
  return fd
}

/**
 * Who besides the caller and root may write this file or device (pure; undefined: no
 * one): its owner when neither, its group unless root's (or, for a block device, the
 * disk group's, whose members may write every disk anyway), every user.
 */
export function othersWhoMayWrite (st: { uid: number, gid: number, mode: number, isBlockDevice: () => boolean }, me: number, diskGid: number | null): string | undefined {
  if (st.uid !== 0 && st.uid !== me) return `its owner, uid ${st.uid},`
  if ((st.mode & 0o002) !== 0) return `every user (mode ${(st.mode & 0o777).toString(8)})`
  const rootsGroup = st.gid === 0 || (st.isBlockDevice() && diskGid != null && st.gid === diskGid)
  if ((st.mode & 0o020) !== 0 && !rootsGroup) return `its group, gid ${st.gid} (mode ${(st.mode & 0o777).toString(8)}),`
  return undefined
}

/**
 * An export's file, opened once for qemu-img to write: made 0600 with O_EXCL, never
 * through a link; one there before (--force) only a regular file with one name of the
 * caller's or root's (a vgrid group member's own earlier export: rv48), or a block
 * device, made 0600 too. O_NONBLOCK, checked on the descriptor: a FIFO swapped in
 * after the path's check hung the open (rv48).
 */
function openTarget (file: string, existed: boolean): number {
  let fd: number
  try {
    fd = openSync(file, existed ? constants.O_WRONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK : constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new CliError(`${file}: ${code === 'ELOOP' ? 'a symbolic link: export writes no file through a link; give the path of the file itself' : code === 'ENXIO' ? 'not a file or block device (it changed since it was looked at): export writes an image file' : (err as Error).message}; nothing was written`, 1)
  }
  const st = fstatSync(fd)
  const me = caller()
  const whose = st.uid === 0 || st.uid === me
  const refuse = !st.isFile() && !st.isBlockDevice()
    ? 'not a file or block device (it changed since it was looked at): export writes an image file'
    : existed && st.isFile() && (!whose || st.nlink !== 1)
      ? `${!whose ? `uid ${st.uid}'s` : `a file of ${st.nlink} names (hard links)`}: an export writes over a file of ${me === 0 ? 'root\'s' : 'yours or root\'s'} with one name only (a volume is a whole disk); remove it, or give another file`
      : undefined
  if (refuse != null) {
    closeSync(fd)
    throw new CliError(`${file} is ${refuse}; nothing was written`, 1)
  }
  if (st.isFile()) fchmodSync(fd, 0o600)
  return fd
}

/** throws naming who uses the volume, when a VM runs from it or an NBD session writes to it */
export function refuseInUse (path: string, u: VolumeUsersView): void {
  const running = u.vms.filter(v => v.running)
  if (running.length > 0) throw new CliError(`${path} is a disk of VM ${running.map(v => `"${v.name}"`).join(', ')}, which runs from it: an import would write under it; stop the VM first`, 1)
  if (u.writers.length > 0) throw new CliError(`${path} is being written over NBD (${u.writers.map(sayWriters).join(', ')}): an import would be a second writer; ${u.writers.every(w => (w.vmDisks ?? 0) >= w.writers) ? 'wait until the VM has stopped' : 'disconnect it first'}`, 1)
}

/** the NBD socket is root's and the vgrid group's (as the API's): say so, not qemu-img's "Permission denied" */
function checkSocketAccess (uri: string): void {
  let sock: string | null = null
  try { sock = new URL(uri).searchParams.get('socket') } catch {}
  if (sock == null) return
  try {
    accessSync(sock, constants.R_OK | constants.W_OK)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES') throw new CliError(`the volume's NBD socket ${sock} is for root and members of the "vgrid" group: run this as root or as a member of that group`, 1)
  }
}

/** the copy was stopped by a signal to the CLI (its qemu-img is stopped with it) */
export class CopyInterrupted extends CliError {
  readonly signal: NodeJS.Signals
  constructor (signal: NodeJS.Signals) {
    super(`interrupted (${signal}): the copy stopped`, 130)
    this.signal = signal
  }
}

/** runs qemu-img (or `tool`: qemu-io), stopped with the CLI; its output, or a CliError with its own error */
async function qemuImg (args: string[], onPercent?: (p: number) => void, tool: 'qemu-img' | 'qemu-io' = 'qemu-img', fd?: number): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    // `fd`, when given, is the tool's fd 3 (FD_PATH)
    // ended by the kernel with the CLI, however it ends (bb50: a SIGKILLed export left its
    // qemu-img writing on, orphaned, to a whole file nobody was told of); setpriv execs it
    // (looked up first: through setpriv, a missing one was "exit 127", not what to install: rv49)
    const path = which(tool)
    if (path == null) { reject(new CliError(`${tool} could not run (install qemu-utils): it is not on the PATH`, 1)); return }
    const [cmd, ...argv] = tiedArgv([path, ...args])
    const p = spawn(cmd!, argv, { stdio: ['ignore', 'pipe', 'pipe', ...fd != null ? [fd] : []] }) as ChildProcessWithoutNullStreams
    let err = ''
    let stdout = ''
    let interrupted: NodeJS.Signals | undefined
    // a signal to the CLI alone (kill PID, timeout, a supervisor) must not leave qemu-img
    // writing on, orphaned: it is stopped, and the caller cleans up (the export's snapshot)
    const onSignal = (sig: NodeJS.Signals): void => { interrupted ??= sig; p.kill('SIGTERM') }
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
    for (const sig of signals) process.on(sig, onSignal)
    const done = (): void => { for (const sig of signals) process.off(sig, onSignal) }
    p.stdout.on('data', (b: Buffer) => {
      if (onPercent == null) { stdout += b.toString(); return }
      const pct = qemuImgPercent(b.toString())
      if (pct != null) onPercent(pct)
    })
    p.stderr.on('data', (b: Buffer) => { err += b.toString() })
    p.once('error', e => { done(); reject(new CliError(`${tool} could not run (install qemu-utils): ${e.message}`, 1)) })
    p.once('exit', code => {
      done()
      if (interrupted != null) reject(new CopyInterrupted(interrupted))
      else if (code === 0 && !/^(write|read) failed/m.test(stdout + err)) resolve(stdout)
      else reject(new CliError(`${tool === 'qemu-img' ? `qemu-img ${args[0] ?? ''}` : tool} failed (exit ${String(code)})${(err + (onPercent == null ? stdout : '')).trim() === '' ? '' : `: ${(err + (onPercent == null ? stdout : '')).trim()}`}`, 1))
    })
  })
}
