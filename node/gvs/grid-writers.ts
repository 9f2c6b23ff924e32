// Who writes a volume anywhere on the grid: the NBD sessions each node serves it to,
// asked over the status protocol (status-protocol.ts). A destroy, a rename and an import
// ask every live node, and one that does not answer refuses them (writersOf); a plain
// export's session asks every other member before it writes, and goes on only if none
// writes or claims it first (otherWriters, writers.ts claimVerdict).
import { mayBeRunning, type MemberTable } from '../../protocol/membership.ts'
import { UnavailableError } from '../errors.ts'
import { GvsError } from './errors.ts'
import type { Logger } from '../log.ts'
import { RepeatedLines } from '../log-repeats.ts'
import type { StatusService } from './status-protocol.ts'
import { claimVerdict, type ClaimAnswer } from './writers.ts'
import type { NodeWriters } from './say-writers.ts'

export interface GridWritersComponents {
  self: string
  log: Logger
  status: Pick<StatusService, 'ask'>
  members: () => MemberTable
  /** the live nodes that hold replicas */
  liveIds: () => Set<string>
  /**
   * why a claim of the volume may go on without this node's answer, or null: this node
   * cannot reach it though membership holds it alive (a partial partition), and the
   * fence that follows the claim refuses its writer, if it has one, at the other
   * holders of every object (GvsService.passUnreached)
   */
  passUnreached?: (volume: string, node: string) => string | null
}

export type { NodeWriters } from './say-writers.ts'

export class GridWriters {
  private readonly c: GridWritersComponents
  private readonly repeats = new RepeatedLines()
  constructor (components: GridWritersComponents) { this.c = components }

  nameOf (node: string): string { return this.c.members().get(node)?.advert.name ?? `node ${node}` }

  /**
   * NBD writers of a volume on every live node. A live node that does not answer
   * makes it unknowable: that refuses the destroy (503) rather than guess.
   */
  async writersOf (id: string): Promise<NodeWriters[]> {
    const nodes = [...new Set([...this.c.liveIds(), this.c.self])]
    const writing: NodeWriters[] = []
    const silent: string[] = []
    await Promise.all(nodes.map(async node => {
      try {
        // writer counts only, which every node answers at once
        const a = (await this.c.status.ask(node, [id], 3000, { writersOnly: true }))[id]
        const writers = a?.writers ?? 0
        const name = this.c.members().get(node)?.advert.name
        if (writers > 0) writing.push({ node, ...(name != null ? { name } : {}), writers, ...(a?.vmDisks != null ? { vmDisks: Math.min(a.vmDisks, writers) } : {}) })
      } catch { silent.push(node) }
    }))
    if (silent.length > 0) throw new UnavailableError(`could not ask ${silent.map(s => this.nameOf(s)).join(', ')} whether a client writes to the volume; try again`, 'writers-unknown')
    return writing
  }

  /**
   * The other nodes whose clients write the volume now, or claim it first, for a plain
   * export's session (writers.ts), or null. Every member that may still run a client is
   * asked, suspect ones and those without disk too. One that does not answer within a
   * second is asked again for as long as membership holds it alive or suspect: a node
   * stalled for a moment (an agent stopped a second, a lost answer) may have a client
   * writing, and taking it for none let two nodes write at one epoch. A dead one is not
   * waited for (its clients went with it, as far as anyone can tell; the failure
   * detector takes about 3 s); one still alive and silent after `waitMs` fails the write
   * (EIO), naming it.
   */
  async otherWriters (id: string, waitMs = CLAIM_WAIT_MS): Promise<string | null> {
    const self = this.c.self
    const live = (node: string): boolean => mayBeRunning(this.c.members().get(node)?.state)
    const unreached = (node: string): boolean => {
      const why = this.c.passUnreached?.(id, node) ?? null
      // once a while per node (log-repeats.ts): every NBD session's claim asks (bb36: 132 alike in seconds)
      if (why != null) this.repeats.log(this.c.log, 'warn', `unasked:${node}`, 'a node this one cannot reach was not asked whether a client writes the volume: the claim goes on, and the fence that follows refuses that node\'s writer, if it has one, at every other holder', { volume: id, node: this.nameOf(node), why })
      return why != null
    }
    let ask = [...this.c.members().values()].filter(m => m.nodeId !== self && live(m.nodeId) && !unreached(m.nodeId)).map(m => m.nodeId)
    const answers: ClaimAnswer[] = []
    const until = Date.now() + waitMs
    for (let round = 0; ask.length > 0; round++) {
      if (round > 0) await new Promise(resolve => setTimeout(resolve, ASK_AGAIN_MS))
      const silent: string[] = []
      await Promise.all(ask.map(async node => {
        try {
          const a = (await this.c.status.ask(node, [id], 1000, { claim: true }))[id]
          answers.push({ node, name: this.nameOf(node), writers: a?.writers ?? 0, claiming: a?.claiming === true })
        } catch (err) {
          silent.push(node)
          if (round === 0) this.c.log.warn('could not ask a node whether a client writes the volume; asking again while it is alive', { volume: id, node: this.nameOf(node), error: (err as Error).message })
        }
      }))
      ask = silent.filter(n => live(n) && !unreached(n))
      if (ask.length > 0 && Date.now() >= until) {
        throw new GvsError('unavailable', `volume ${id}: ${ask.map(n => this.nameOf(n)).join(', ')} did not say within ${Math.round(waitMs / 1000)} s whether a client writes the volume there, and membership still holds ${ask.length === 1 ? 'it' : 'them'} alive: one node writes a volume at a time, so this write waits for ${ask.length === 1 ? 'its' : 'their'} answer or for ${ask.length === 1 ? 'it' : 'them'} to be found dead; try again`)
      }
    }
    return claimVerdict(self, answers)
  }
}

/** how long a plain export's claim asks a live node that does not answer */
export const CLAIM_WAIT_MS = 10_000
/** the pause between two rounds of asking the silent ones */
const ASK_AGAIN_MS = 200
