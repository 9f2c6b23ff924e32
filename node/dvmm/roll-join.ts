// This node's entry on the member roll (the nodes "a majority" counts): written once,
// when it first starts, by a decision step that sees a majority of the synced roll plus
// itself (mayChangeRoll; a node given --join also waits until its document holds
// another node's entry, or until it reached a join address and holds a live member's
// document, which then has no roll: a new grid whose every node was told to join), so nodes joining through one cut off from the majority cannot
// grow the minority's roll into a second majority. A node forgotten while it ran (`vgrid
// node forget` on the majority side while it was cut off) and back in sight writes its
// entry again the same way: it runs, so it is a member, not a server gone for good.
import type { Logger } from '../log.ts'
import type { Writer } from '../../crdt/index.ts'
import { mayChangeRoll } from '../../crdt/placement/index.ts'
import type { MemberTable } from '../../protocol/membership.ts'
import type { Clock } from '../service.ts'
import { docStamp } from './run-steps.ts'
import type { DocView } from './view.ts'

export interface RollJoinComponents {
  peerId: string
  log: Pick<Logger, 'warn'>
  clock: Clock
  config: { name: string, join?: readonly string[] }
  state: { read: () => { get: (kind: 'roll', key: string) => unknown } }
  /**
   * whether this node, told to join, has synced with the grid: it reached a join address
   * and holds the document a live member announced (see RollChangeInput.synced; default
   * false: only another node's roll entry says so)
   */
  joinSynced?: () => boolean
  /** queues a document update for the next step's write */
  enqueue: (fn: (w: Writer) => void, opts: { key: string, written: () => void }) => void
}

export class RollJoin {
  private readonly c: RollJoinComponents
  /** when this node started without a roll entry: until written, the time it joined */
  private joinedAt?: number
  /** this run has seen its own entry on the roll */
  private listed = false

  constructor (components: RollJoinComponents) {
    this.c = components
  }

  /** at the service's start: a node without an entry yet notes when it joined */
  start (): void {
    this.joinedAt = this.c.state.read().get('roll', this.c.peerId) == null ? docStamp(this.c.clock) : undefined
  }

  /** Queues this node's roll entry, once a step sees a majority of the synced roll (mayChangeRoll). */
  step (doc: DocView, members: MemberTable): void {
    const me = this.c.peerId
    if (doc.roll.has(me)) { this.joinedAt = undefined; this.listed = true; return }
    if (this.joinedAt == null && this.listed) {
      // its entry went while it ran: forgotten (a leave removes it only as this run stops)
      // (said by the agent, as for a forget while it was down: node/agent.ts)
      this.listed = false
      this.joinedAt = docStamp(this.c.clock)
    }
    const joined = this.joinedAt
    if (joined == null) return
    const may = mayChangeRoll({ roll: doc.roll.keys(), me, alive: id => members.get(id)?.state === 'alive', joining: (this.c.config.join?.length ?? 0) > 0, synced: this.c.joinSynced?.() === true })
    if (!may.ok) return
    this.c.enqueue(w => { if (w.reader.get('roll', me) == null) w.put('roll', { node: me, name: this.c.config.name, joined }) }, {
      key: 'roll:self',
      written: () => { this.joinedAt = undefined }
    })
  }
}
