// Writer epochs of the volumes a store holds (invariant 3): per volume the newest
// epoch seen, kept durably in <dir>/<volume> as text "<epoch>\n", written and fsync'ed
// (with its directory) before the first write of a newer epoch is taken. A layer freed
// here (folded into the one above, or its volume destroyed) leaves its epoch to its
// line, in <dir>/<base>.floor: the layers above it must still refuse the writers it
// refused, whatever this node holds of them.
import { open, readdir, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { GvsError, fromFsError, isGvsError } from './errors.ts'
import { EPOCH_FILE_DAMAGED } from './store-refusals.ts'
import { syncPath } from './file-io.ts'
import { layerNumber } from './volumes.ts'

const FLOOR = '.floor'
/** the file of what a line's freed layers left (no layer is named so: names hold no ".") */
const floorName = (base: string): string => `${base}${FLOOR}`

export class WriterEpochs {
  private readonly dir: string
  private readonly known = new Map<string, number>()
  private readonly recording = new Map<string, Promise<unknown>>()
  /** per volume, the epochs queued or being recorded: an older writer is rejected meanwhile */
  private readonly inFlight = new Map<string, Set<number>>()

  /**
   * per base layer, the layers of its line (itself, "BASE@N") that have an epoch file
   * here: read from the directory once, kept up to date by recordings and forgets
   */
  private lines: Promise<Map<string, Set<string>>> | null = null
  /** the lines that have a floor file here (listed with the lines) */
  private readonly floorLines = new Set<string>()
  /** per line, its forgets in flight, one after the other */
  private readonly lineOps = new Map<string, Promise<unknown>>()

  /** volumes whose damaged epoch file was reported (once each) */
  private readonly reported = new Set<string>()
  private readonly onDamaged?: (volume: string, file: string, why: string) => void

  /**
   * dir: where the epoch files are (it must exist); volume names are checked by the
   * caller. onDamaged: told once per volume of an epoch file that holds no epoch
   */
  constructor (dir: string, onDamaged?: (volume: string, file: string, why: string) => void) {
    this.dir = dir
    this.onDamaged = onDamaged
  }

  /** the newest writer epoch seen for the volume (0: none) */
  async get (volume: string): Promise<number> {
    const known = this.known.get(volume)
    if (known != null) return known
    let e = 0
    try {
      const fh = await open(join(this.dir, volume), 'r')
      try {
        const text = (await fh.readFile('utf8')).trim()
        // digits only: Number() reads '' (an emptied file) as 0, no epoch seen, and
        // takes '0x10' or '1e3' for numbers the writer never wrote
        e = /^\d{1,16}$/.test(text) ? Number(text) : NaN
        if (!Number.isSafeInteger(e)) {
          // writes stay refused (the newest writer epoch is unknown: an old writer could
          // otherwise write), and the operator is told once
          const why = `holds ${JSON.stringify(text.slice(0, 40))}, not an epoch`
          if (!this.reported.has(volume)) { this.reported.add(volume); this.onDamaged?.(volume, join(this.dir, volume), why) }
          throw new GvsError('damaged', `${EPOCH_FILE_DAMAGED}"${volume}" ${why}`)
        }
      } finally { await fh.close() }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromFsError(err, `reading the epoch of "${volume}"`)
    }
    this.known.set(volume, e)
    return e
  }

  /**
   * Admits a writer with this epoch: a newer one is recorded durably first, an older
   * one is rejected with 'stale-epoch'. `learnOnly` (a copy, a fold teaching the layer
   * above): nothing is rejected, and an epoch newer than the layer's own is recorded on
   * it, even if a layer under it has it (that layer may be freed next).
   */
  async admit (volume: string, epoch: number, learnOnly: boolean): Promise<void> {
    if (!Number.isSafeInteger(epoch) || epoch < 0) throw new GvsError('invalid', `epoch ${epoch} is not a non-negative integer`)
    const seen = async (): Promise<number> => learnOnly ? await this.get(volume) : await this.floor(volume)
    const check = (cur: number): boolean => {
      if (learnOnly) return epoch <= cur
      // a newer epoch being recorded counts as seen: its writer has taken over, and the
      // writer of the recorded epoch must not land writes while it is being recorded
      const newest = Math.max(cur, ...(this.inFlight.get(volume) ?? []))
      if (epoch < newest) throw new GvsError('stale-epoch', `volume "${volume}": writer epoch ${epoch} is older than ${newest}, the newest this replica has seen`)
      return epoch === cur
    }
    if (check(await seen())) return
    const queued = this.inFlight.get(volume) ?? new Set<number>()
    this.inFlight.set(volume, queued)
    queued.add(epoch)
    // one recording per volume at a time: the newest wins, never an older after it
    const prev = this.recording.get(volume) ?? Promise.resolve()
    const run = prev.then(async () => {
      if (check(await seen())) return
      await this.writeEpoch(volume, epoch)
      const { base } = layerNumber(volume)
      const lines = await this.linesIndex()
      let line = lines.get(base)
      if (line == null) lines.set(base, line = new Set())
      line.add(volume)
    })
    const tail = run.catch(() => {})
    this.recording.set(volume, tail)
    try { await run } finally {
      if (this.recording.get(volume) === tail) this.recording.delete(volume)
      queued.delete(epoch)
      if (queued.size === 0 && this.inFlight.get(volume) === queued) this.inFlight.delete(volume)
    }
  }

  /**
   * What a writer of the layer must reach: the newest epoch seen on it or on any layer
   * under it (a snapshot's new top layer starts from the epoch of the layers under it). A fence lands on the top layer its node knows of; a writer it deposed
   * that follows a snapshot made since must still be refused on the new top layer.
   */
  async floor (layer: string): Promise<number> {
    // the highest over the layers: a deposed writer that reached the new top layer first
    // recorded its epoch there, and the fence then went to the layer under it. Every
    // layer of the line at or under this one that has an epoch here counts (the names
    // in between were never written: no walk through them, however high the number)
    const { base, n } = layerNumber(layer)
    // what the line's freed layers left
    let floor = Math.max(this.known.get(layer) ?? 0, await this.get(floorName(base)))
    const line = (await this.linesIndex()).get(base)
    if (line == null) return floor
    // (each write asks: the cached epochs are read without an await)
    for (const l of line) if (layerNumber(l).n <= n) floor = Math.max(floor, this.known.get(l) ?? await this.get(l))
    return floor
  }

  /** the layers that have an epoch file here (a node that holds none of a layer's objects may have one: a fence reaches every node) */
  async layers (): Promise<string[]> {
    return [...(await this.linesIndex()).values()].flatMap(line => [...line])
  }

  /** the epoch files here, by line (read once) */
  private async linesIndex (): Promise<Map<string, Set<string>>> {
    this.lines ??= (async () => {
      const lines = new Map<string, Set<string>>()
      let names: string[]
      try { names = await readdir(this.dir) } catch (err) { this.lines = null; throw fromFsError(err, 'listing the writer epochs') }
      for (const name of names) {
        if (name.endsWith('.tmp')) continue
        if (name.endsWith(FLOOR)) { this.floorLines.add(name.slice(0, -FLOOR.length)); continue }
        const { base } = layerNumber(name)
        let line = lines.get(base)
        if (line == null) lines.set(base, line = new Set())
        line.add(name)
      }
      return lines
    })()
    return await this.lines
  }

  /** writes a layer's epoch (or a line's floor) durably: tmp, fsync, rename, fsync of the directory */
  private async writeEpoch (name: string, epoch: number): Promise<void> {
    const file = join(this.dir, name)
    try {
      const fh = await open(`${file}.tmp`, 'w')
      try {
        await fh.writeFile(`${epoch}\n`)
        await fh.sync()
      } finally { await fh.close() }
      await rename(`${file}.tmp`, file)
      await syncPath(this.dir + '/')
    } catch (err) { throw fromFsError(err, `recording epoch ${epoch} of "${name}"`) }
    this.known.set(name, epoch)
  }

  /**
   * The layer is gone from this store: its epoch goes to its line's floor first (the
   * layers above it count it; a fold taught the layer above it only on the nodes it
   * reached). A damaged epoch file stays: the line's writes stay refused here, as before.
   */
  async forget (volume: string): Promise<void> {
    const { base } = layerNumber(volume)
    // after the layer's recordings in flight (one landing after the read below would be
    // deleted with the file, unseen by the floor), and before any that come later
    const prev = this.recording.get(volume) ?? Promise.resolve()
    const run = prev.then(async () => await this.inLine(base, async () => {
      let own: number
      try { own = await this.get(volume) } catch (err) {
        if (isGvsError(err, 'damaged')) return
        throw err
      }
      if (own > await this.get(floorName(base))) {
        await this.writeEpoch(floorName(base), own)
        this.floorLines.add(base)
      }
      await rm(join(this.dir, volume), { force: true })
      this.known.delete(volume)
      ;(await this.linesIndex()).get(base)?.delete(volume)
    }))
    const tail = run.catch(() => {})
    this.recording.set(volume, tail)
    try { await run } finally { if (this.recording.get(volume) === tail) this.recording.delete(volume) }
  }

  /** the lines that have a floor here (what freed layers left) */
  async floors (): Promise<string[]> {
    await this.linesIndex()
    return [...this.floorLines]
  }

  /** Every layer of the line is gone for good (its volume destroyed, in the document): its floor goes too. */
  async forgetLine (base: string): Promise<void> {
    await this.inLine(base, async () => {
      await rm(join(this.dir, floorName(base)), { force: true })
      this.known.delete(floorName(base))
      this.floorLines.delete(base)
    })
  }

  /** runs `fn` after the line's earlier forgets (two raising its floor at once must not lower it) */
  private async inLine (base: string, fn: () => Promise<void>): Promise<void> {
    const run = (this.lineOps.get(base) ?? Promise.resolve()).then(fn)
    const tail = run.catch(() => {})
    this.lineOps.set(base, tail)
    try { await run } finally { if (this.lineOps.get(base) === tail) this.lineOps.delete(base) }
  }
}
