// The last repair of each volume this node ran (repair-runs.ts), kept in
// <data-dir>/gvs-repairs.json so that what it found survives a restart: above all an
// object damaged on every copy (`unsound`), which keeps its volume degraded until a
// scrub finds it sound. Without the file, restarting the node that ran the scrub made
// such a volume look healthy again while its object was still unreadable. The file is
// written whole (tmp, fsync, rename, fsync of the directory); a damaged one is reported
// and read as empty (the next repair or scrub writes a new one). Long lists are cut:
// the record says what was wrong, the repair's own answer had all of it.
import type { Logger } from '../log.ts'
import { RecordFile } from '../record-file.ts'
import type { LastRepair } from './health.ts'

export const REPAIRS_FILE = 'gvs-repairs.json'
const FORMAT = 1
/** at most this many of each list per volume are kept */
export const KEEP = 100

type Scrubbed = NonNullable<LastRepair['scrubbed']>[number]

/** the file's text for the repairs (volume ids sorted; lists cut to KEEP, unhealed scrub findings first) */
export function formatRepairs (last: ReadonlyMap<string, LastRepair>): string {
  const out: Record<string, LastRepair> = {}
  for (const id of [...last.keys()].sort()) {
    const r = last.get(id)!
    const scrubbed = r.scrubbed == null ? undefined : [...r.scrubbed.filter(s => !s.healed), ...r.scrubbed.filter(s => s.healed)].slice(0, KEEP)
    out[id] = { ...r, errors: r.errors.slice(0, KEEP), lostObjects: r.lostObjects.slice(0, KEEP), ...(scrubbed != null ? { scrubbed } : {}) }
  }
  return JSON.stringify({ format: FORMAT, repairs: out }) + '\n'
}

const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0
const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x != null && !Array.isArray(x)

/** one volume's record, or why it is not one */
function parseOne (id: string, x: unknown): LastRepair | string {
  if (!isObject(x)) return `the record of ${id} is not an object`
  for (const k of ['at', 'copied', 'failed', 'bytes', 'lost'] as const) if (!isCount(x[k])) return `${id}: "${k}" is not a count`
  for (const k of ['unsound', 'unrewritten', 'freed'] as const) if (x[k] !== undefined && !isCount(x[k])) return `${id}: "${k}" is not a count`
  if (typeof x.node !== 'string' || x.node === '') return `${id}: "node" is not a node id`
  if (!Array.isArray(x.errors) || !x.errors.every(e => typeof e === 'string')) return `${id}: "errors" is not a list of strings`
  if (!Array.isArray(x.lostObjects) || !x.lostObjects.every(isCount)) return `${id}: "lostObjects" is not a list of object numbers`
  let scrubbed: Scrubbed[] | undefined
  if (x.scrubbed !== undefined) {
    if (!Array.isArray(x.scrubbed)) return `${id}: "scrubbed" is not a list`
    scrubbed = []
    for (const s of x.scrubbed as unknown[]) {
      if (!isObject(s) || typeof s.layer !== 'string' || !isCount(s.index) || typeof s.node !== 'string' || typeof s.healed !== 'boolean' || (s.error !== undefined && typeof s.error !== 'string')) return `${id}: a "scrubbed" entry is not {layer, index, node, healed, error?}`
      scrubbed.push({ layer: s.layer, index: s.index, node: s.node, ...(typeof s.name === 'string' ? { name: s.name } : {}), healed: s.healed, ...(s.error !== undefined ? { error: s.error as string } : {}), ...(s.readable === true ? { readable: true as const } : {}) })
    }
  }
  return {
    node: x.node, at: x.at as number, copied: x.copied as number, failed: x.failed as number, bytes: x.bytes as number, lost: x.lost as number,
    ...(x.unsound !== undefined ? { unsound: x.unsound as number } : {}),
    ...(x.unsoundRecorded === true ? { unsoundRecorded: true as const } : {}),
    ...(isCount(x.scrubbedAt) ? { scrubbedAt: x.scrubbedAt } : {}),
    ...(x.unrewritten !== undefined ? { unrewritten: x.unrewritten as number } : {}),
    ...(x.freed !== undefined ? { freed: x.freed as number } : {}),
    ...(isCount(x.unavailable) ? { unavailable: x.unavailable } : {}),
    ...(typeof x.unavailableWhy === 'string' ? { unavailableWhy: x.unavailableWhy } : {}),
    errors: x.errors as string[], lostObjects: x.lostObjects as number[], ...(scrubbed != null ? { scrubbed } : {})
  }
}

/** the repairs a file's text holds, or why it holds none (never throws) */
export function parseRepairs (text: string): { repairs: Map<string, LastRepair> } | { error: string } {
  let doc: unknown
  try { doc = JSON.parse(text) } catch (err) { return { error: `not JSON (${(err as Error).message})` } }
  if (!isObject(doc)) return { error: 'not an object' }
  if (doc.format !== FORMAT) return { error: `format ${JSON.stringify(doc.format)}, not ${FORMAT}` }
  if (!isObject(doc.repairs)) return { error: '"repairs" is not an object' }
  const out = new Map<string, LastRepair>()
  for (const [id, x] of Object.entries(doc.repairs)) {
    const r = parseOne(id, x)
    if (typeof r === 'string') return { error: r }
    out.set(id, r)
  }
  return { repairs: out }
}

export class RepairsFile extends RecordFile<Map<string, LastRepair>> {
  constructor (path: string, log: Logger) {
    super(path, log, {
      what: 'the last repairs',
      ifLost: 'a volume with an object damaged on every copy shows healthy until the next scrub',
      empty: () => new Map(),
      format: formatRepairs,
      parse: text => { const r = parseRepairs(text); return 'error' in r ? r : { value: r.repairs } }
    })
  }
}
