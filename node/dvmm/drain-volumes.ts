// The volume half of `vgrid node drain --wait` (pure): a node being drained takes no
// volume objects (node/gvs/live-placement.ts), repair copies its objects to their new
// holders and frees its copies; the drain is done once no volume's last inventory
// finds a copy there and every volume is healthy over the nodes left, or it cannot be
// (too few other nodes: the copies stay, and why is said).
import type { VolumeView } from '../gvs/routes.ts'
import type { NodeView } from '../api/types.ts'

export interface VolumesAnswer {
  volumes: Array<Pick<VolumeView, 'path' | 'state' | 'writesWentTo'> & { health: Pick<VolumeView['health'], 'state' | 'copiesOn'> & Partial<Pick<VolumeView['health'], 'reasons'>> }>
  /** the draining nodes whose objects move off them now, and why none do if so (GET /v1/volumes) */
  evacuation?: { nodes: string[], why?: string, away?: string[] }
}

export interface VolumeDrainProgress {
  /** volumes with copies on the node at their last inventory, and how many */
  holding: Array<{ path: string, copies: number }>
  /** volumes not yet healthy over the nodes left (being repaired) */
  repairing: string[]
  /** volumes whose records of where writes went still place objects on the node (a repair that ends healthy clears them; a leave before that would leave those objects unavailable, bb28) */
  recorded: string[]
  /** the first of them not being repaired now, and its first reason (a copy that cannot be made, and where) */
  why?: string
  /** why the copies stay on the node (too few other nodes), if so */
  stays?: string
  /** the node is not alive (restarting, or dead): what it holds is not known */
  away?: true
  /** volumes with no inventory of their copies yet: whether the node holds some is not known */
  unknown?: string[]
  /**
   * no copy on it, no record of writes going to it, and it is alive to say so: nothing
   * of this drain's to wait for (bb30: a node restarting during the drain listed nothing,
   * and the wait said "drained" while it held the only copies of an R=1 volume)
   */
  nothingThere: boolean
  done: boolean
}

export function volumeDrainProgress (node: string, a: VolumesAnswer): VolumeDrainProgress {
  const ready = a.volumes.filter(v => v.state === 'ready')
  const holding = ready.flatMap(v => { const copies = v.health.copiesOn?.[node] ?? 0; return copies > 0 ? [{ path: v.path, copies }] : [] })
  const repairing = ready.filter(v => v.health.state !== 'healthy').map(v => v.path)
  // an older agent's answer has no such record: not waited for
  const recorded = ready.filter(v => v.writesWentTo?.includes(node) === true && !holding.some(h => h.path === v.path)).map(v => v.path)
  // an agent from before drains moved objects says nothing of it: its copies stay; one
  // that has not taken the drain in yet says neither (the answer after says)
  const e = a.evacuation
  const stays = holding.length === 0
    ? undefined
    : e == null
      ? 'the agent answering does not move volume copies off a draining node (an older release)'
      : !e.nodes.includes(node) ? e.why : undefined
  // a volume that stays degraded says why, where a repair running now would say nothing yet
  const stuck = ready.find(v => v.health.state === 'degraded' && (v.health.reasons?.length ?? 0) > 0)
  const why = stuck == null ? undefined : `${stuck.path}: ${stuck.health.reasons![0]!}`
  const away = e?.away?.includes(node) === true
  // a volume with no inventory yet says nothing of where its copies are (bb31: "no copy left", then 45)
  const unknown = ready.filter(v => v.health.copiesOn == null).map(v => v.path)
  const nothingThere = holding.length === 0 && recorded.length === 0 && unknown.length === 0 && !away
  return { holding, repairing, recorded, ...unknown.length > 0 ? { unknown } : {}, ...why != null ? { why } : {}, ...stays != null ? { stays } : {}, ...away ? { away } : {}, nothingThere, done: nothingThere && repairing.length === 0 }
}

/** one line of the drain's volume progress */
export function volumeDrainLine (name: string, p: VolumeDrainProgress): string {
  const copies = p.holding.reduce((n, h) => n + h.copies, 0)
  if (p.done) return `  volumes: no copy left on ${name}, every volume healthy on the other nodes`
  const on = p.away === true
    ? `${name} is not alive now (restarting?): what it holds is not known, and its copies move once it is back`
    : p.holding.length === 0 && (p.unknown?.length ?? 0) > 0
      ? `where the copies of ${p.unknown!.length} volume(s) are is not known yet (no inventory: ${p.unknown!.slice(0, 3).join(', ')}${p.unknown!.length > 3 ? ', ...' : ''})`
      : p.holding.length > 0 ? `${copies} object cop${copies === 1 ? 'y' : 'ies'} of ${p.holding.length} volume(s) still on ${name} (${p.holding.slice(0, 3).map(h => h.path).join(', ')}${p.holding.length > 3 ? ', ...' : ''})` : `no copy left on ${name}`
  const rep = p.repairing.length > 0 ? `; ${p.repairing.length} volume(s) repairing or degraded (${p.repairing.slice(0, 3).join(', ')}${p.repairing.length > 3 ? ', ...' : ''})${p.why != null ? `; ${p.why}` : ''}` : ''
  const rec = p.recorded.length > 0 ? `; ${p.recorded.length} volume(s) still record writes as going to ${name} (${p.recorded.slice(0, 3).join(', ')}${p.recorded.length > 3 ? ', ...' : ''}), until their next repair clears that` : ''
  return `  volumes: ${on}${rep}${rec}`
}

/**
 * Whether a draining node that is not alive is down for good, as far as the drain can
 * tell: no node view (not a member this agent knows: a 404), or one dead with no
 * restart under way (the agent answering drops a restart record once its grace ran out).
 * Its copies cannot move off it; the wait says so and names `vgrid node forget` instead
 * of waiting out its timeout (bb36). A suspect node, or one that left (a restart with
 * the grace off), may be back in a moment: waited for.
 */
export function awayForGood (view: Pick<NodeView, 'state' | 'restarting'> | null): boolean {
  return view == null || (view.state === 'dead' && view.restarting == null)
}
