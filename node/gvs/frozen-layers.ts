// The layers a snapshot froze, as this replica knows them: no write or write-zeroes
// lands in them any more, whichever writer sends it. A snapshot is one document change
// (the volume's top layer becomes the snapshot's, and a new top takes the writes), and
// a writer follows it only once its own node's document has it: a writer cut off from
// the document's sync kept writing into the snapshot's layer, a write made after the
// snapshot that the snapshot then showed. So the node that takes a snapshot also tells
// every live node (the replica request `freeze`) before it answers, and each replica
// refuses writes to that layer from then on (`frozen`; only to writers that say they
// follow freezes, replication.ts): the writer waits for its document and writes again
// on the new top (live-volume.ts). A replica whose document already shows a layer under
// a volume's top or in a snapshot refuses it too, so a node that was down during the
// snapshot, or that receives copies by repair, needs no word.
// Kept durably, one empty file per layer under <data-dir>/gvs/frozen/ (created and its
// directory fsync'ed before `freeze` is answered): a replica restarted before its
// document caught up still refuses. A layer freed here (object-store.ts removeVolume)
// forgets it.
import { mkdir, open, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { fromFsError } from './errors.ts'
import { syncPath } from './file-io.ts'

export class FrozenLayers {
  private readonly dir: string
  /** frozen by a `freeze` (kept on disk) */
  private readonly told = new Set<string>()
  /** frozen in this node's document (a layer under a volume's top, or a snapshot's) */
  private inDocument: () => ReadonlySet<string> = () => new Set()

  constructor (dir: string) { this.dir = dir }

  async start (): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true })
      for (const name of await readdir(this.dir)) this.told.add(name)
    } catch (err) { throw fromFsError(err, `reading the frozen layers in ${this.dir}`) }
  }

  /** whether writes to this layer are refused here */
  has (layer: string): boolean { return this.told.has(layer) || this.inDocument().has(layer) }

  /** the layers this node's document reads frozen (asked at each write: keep it cached per document version) */
  useDocument (layers: () => ReadonlySet<string>): void { this.inDocument = layers }

  /** the layers frozen by a `freeze` and kept here */
  list (): string[] { return [...this.told] }

  /** Freezes the layers here, durably before it returns (the name is checked by the caller). */
  async add (layers: readonly string[]): Promise<void> {
    const fresh = layers.filter(l => !this.told.has(l))
    if (fresh.length === 0) return
    // refused from now on, before the file is there: a write checked while it is made
    // would land after the answer. A failed record stays refused in memory (the safe
    // side) and fails the request
    for (const l of fresh) this.told.add(l)
    try {
      for (const l of fresh) await (await open(join(this.dir, l), 'w')).close()
      await syncPath(this.dir + '/')
    } catch (err) { throw fromFsError(err, `recording frozen layers in ${this.dir}`) }
  }

  /** the layer is gone from this store */
  async forget (layer: string): Promise<void> {
    if (!this.told.has(layer)) return
    try { await rm(join(this.dir, layer), { force: true }) } catch (err) { throw fromFsError(err, `forgetting the frozen layer ${layer}`) }
    this.told.delete(layer)
  }
}
