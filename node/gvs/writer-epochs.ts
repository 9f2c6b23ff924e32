// A volume's writer epoch (invariant 3): each replica keeps the newest epoch it has
// seen per volume and refuses writes from an older one. A VM's holder fences its disk
// at the VM's lease epoch before the VM starts; a plain NBD export's client claims the
// next epoch in the document (ClaimEpochs in writers.ts) and fences it the same way.
import type { Volume, Writer } from '../../crdt/index.ts'
import { volumeEpoch } from '../../crdt/placement/index.ts'
import type { Logger } from '../log.ts'
import { UnavailableError } from '../errors.ts'
import { GvsError } from './errors.ts'
import { callEach, type ReplicaTransport } from './replication.ts'
import { layersOf } from './volumes.ts'

export interface WriterEpochsComponents {
  self: string
  log: Logger
  transport: ReplicaTransport
  /** why this node's calls find `node` out of reach though membership holds it alive, or null */
  outOfReachWhy: (node: string) => string | null
  volumes: () => Volume[]
  /** the live nodes that hold replicas */
  liveNodes: () => string[]
  nameOf: (node: string) => string
  write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T>
  /** records on this node's disk that the volume's disk opens at this epoch (exports.ts) */
  pin: (volumeId: string, epoch: number) => Promise<void>
  /** how long a node that cannot be told for a moment is asked again */
  retryMs: number
}

export class WriterEpochs {
  private readonly c: WriterEpochsComponents

  constructor (c: WriterEpochsComponents) { this.c = c }

  /**
   * Makes `epoch` the volume's writer epoch on every live node before the writer that
   * raised it writes: each then refuses an older writer on every object of the
   * volume, not only on the objects the new writer has touched. A VM's holder calls
   * this before the VM starts; a live node that cannot be told fails the call.
   */
  async fence (volumeId: string, epoch: number): Promise<void> {
    const v = await this.fenceLive(volumeId, epoch)
    // the VM's disk opens pinned to this epoch (exports.ts), whatever the document says by
    // then, and after a restart of this agent too (kept on disk before the VM starts)
    try { await this.c.pin(volumeId, epoch) } catch (err) { throw new UnavailableError(`could not record volume ${v.path}'s writer epoch ${epoch} on this node: ${(err as Error).message}`, 'pin-failed') }
  }

  /**
   * Makes `epoch` the volume's writer epoch on every live node (fence, and a plain
   * export's claim). A node that cannot be told is asked again, over the live nodes as
   * they are then, for as long as a write waits for a replica (retryMs): one that
   * stops drops out of them, one that restarts answers once its volume store is up (a
   * tester's client got EIO from a new session opened just then).
   */
  async fenceLive (volumeId: string, epoch: number): Promise<Volume> {
    const until = Date.now() + this.c.retryMs
    for (let wait = 50; ; wait = Math.min(wait * 2, 1000)) {
      const v = this.c.volumes().find(x => x.id === volumeId)
      if (v == null) throw new UnavailableError(`volume ${volumeId} does not exist`, 'volume-gone')
      const top = layersOf(v)[0]!
      const nodes = [...new Set([...this.c.liveNodes(), this.c.self])]
      const passed: string[] = []
      const failed = (await callEach(this.c.transport, nodes, { op: 'fence', volume: top, epoch })).filter(f => {
        const why = this.passUnreached(volumeId, f.node)
        if (why != null) passed.push(`${this.c.nameOf(f.node)} (${why})`)
        return why == null
      })
      if (passed.length > 0) this.c.log.warn('fenced a volume\'s writer epoch without nodes this one cannot reach: the other holders of every object refuse an older writer there', { volume: v.path, epoch, nodes: passed.join('; ') })
      if (failed.length === 0) return v
      if (failed.some(f => !f.moment) || Date.now() + wait > until) {
        const why = `could not fence volume ${v.path} at writer epoch ${epoch} on ${failed.map(f => `${this.c.nameOf(f.node)}: ${f.why}`).join('; ')}`
        // a holder's full disk is said as one (an NBD client gets ENOSPC, as for a write the disk refuses; bb33 got EIO)
        // only when that is all there is to it (a newer writer's refusal, say, comes first: rv38)
        const lasting = failed.filter(f => !f.moment)
        if (lasting.length > 0 && lasting.every(f => f.full === true)) throw new GvsError('no-space', why)
        throw new UnavailableError(why, 'fence-failed')
      }
      await new Promise(resolve => setTimeout(resolve, wait))
    }
  }

  /**
   * Why a writer's claim or fence of the volume may go on without the node's answer, or
   * null. Only a node this one's calls found out of reach though membership holds it
   * alive (peer-reach.ts: no answer to a ping, not a moment's silence), and only with
   * R >= 2: every object then has another holder, which the fence reaches and which
   * refuses that node's writer (if it has one), so it gets no write acknowledged. With
   * R = 1 its objects may be its alone: the claim waits for it, as before.
   */
  passUnreached (volumeId: string, node: string): string | null {
    const why = this.c.outOfReachWhy(node)
    if (why == null) return null
    const v = this.c.volumes().find(x => x.id === volumeId)
    return v != null && v.replicas >= 2 ? `out of reach from this node: ${why}` : null
  }

  /**
   * The writer epoch of this node's claim of a volume for a plain export's client
   * (writers.ts ClaimEpochs): past every other writer's, in the document; kept while
   * it is this node's own already (no other node wrote in between). A session claiming
   * again (`held`: its last claim's epoch) gets `since` if the epoch moved meanwhile.
   */
  async claim (id: string, held?: number): Promise<{ epoch: number } | { since: number }> {
    return await this.c.write(w => {
      const v = w.reader.get('volumes', id)?.value
      if (v == null) throw new GvsError('unavailable', `volume ${id} no longer exists`)
      const cur = v.epoch ?? 1
      if (held != null && cur !== held) return { since: cur }
      const epoch = volumeEpoch(cur, 0, this.c.self)
      if (epoch !== cur) w.update('volumes', id, { epoch })
      return { epoch }
    }, `gvs: a client on this node writes volume ${id}`)
  }
}
