// The writer epochs this node fenced, per volume (exports.ts `pins`), kept in
// <data-dir>/gvs-pins.json so that a VM's disk, opened as NAME~EPOCH, opens again after
// the agent restarts: QEMU reconnects asking for the same name, and in a contested
// lease the document may by then hold the other holder's epoch. The file is written
// whole (tmp, fsync, rename, fsync of the directory): a crash leaves the old or the
// new set, never half of one. A damaged file is reported and read as empty: the disks
// it named open again once their holder fences, as on a first start.
import type { Logger } from '../log.ts'
import { RecordFile } from '../record-file.ts'

export const PINS_FILE = 'gvs-pins.json'
const FORMAT = 1

export type Pins = Map<string, number[]>

/** the file's text for a set of pins (volume ids sorted: equal sets, equal files) */
export function formatPins (pins: Pins): string {
  const out: Record<string, number[]> = {}
  for (const id of [...pins.keys()].sort()) out[id] = [...pins.get(id)!]
  return JSON.stringify({ format: FORMAT, pins: out }) + '\n'
}

/** the pins a file's text holds, or why it holds none (never throws) */
export function parsePins (text: string): { pins: Pins } | { error: string } {
  let doc: unknown
  try { doc = JSON.parse(text) } catch (err) { return { error: `not JSON (${(err as Error).message})` } }
  if (typeof doc !== 'object' || doc == null || Array.isArray(doc)) return { error: 'not an object' }
  const { format, pins } = doc as { format?: unknown, pins?: unknown }
  if (format !== FORMAT) return { error: `format ${JSON.stringify(format)}, not ${FORMAT}` }
  if (typeof pins !== 'object' || pins == null || Array.isArray(pins)) return { error: '"pins" is not an object' }
  const out: Pins = new Map()
  for (const [id, epochs] of Object.entries(pins)) {
    if (id === '' || id.includes('~')) return { error: `volume id ${JSON.stringify(id)}` }
    if (!Array.isArray(epochs) || epochs.length === 0) return { error: `the epochs of ${id} are not a list of numbers` }
    // the epochs a NAME~EPOCH name can give (exports.ts PINNED: up to 16 digits)
    const bad = epochs.find(e => !Number.isSafeInteger(e) || (e as number) < 0)
    if (bad !== undefined) return { error: `the epochs of ${id} hold ${JSON.stringify(bad)}, not a writer epoch` }
    out.set(id, [...new Set(epochs as number[])])
  }
  return { pins: out }
}

export class PinsFile extends RecordFile<Pins> {
  constructor (path: string, log: Logger) {
    super(path, log, {
      what: 'the pinned writer epochs',
      ifLost: 'a VM disk opened at an epoch this node fenced before the restart may not open again until its VM is started again',
      empty: () => new Map(),
      format: formatPins,
      parse: text => { const r = parsePins(text); return 'error' in r ? r : { value: r.pins } }
    })
  }
}
