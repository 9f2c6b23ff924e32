// Each volume's state as the API shows it (healthy, degraded, repairing, with reasons):
// the node coordinating a volume's repair takes inventories of its copies (a list
// request to each live node, good for a few seconds) and computes the state from them
// (health.ts, pure); any other node asks the coordinator over the status protocol and
// falls back on its own view, saying so.
import type { Volume } from '../../crdt/index.ts'
import type { MemberTable } from '../../protocol/membership.ts'
import { coordinatorOf, unrecordedUnsound, volumeHealth, type LastRepair, type LayerCopies, type VolumeHealthView } from './health.ts'
import type { RepairRuns } from './repair-runs.ts'
import type { StatusAnswer, StatusService } from './status-protocol.ts'
import { layerNumber, layersOf, referencedLayers, sayLayers } from './volumes.ts'

/**
 * A volume's state as seen from a node that sees no majority of the roll (`why`): it
 * reads and writes no volume then (replicated-volume.ts), so it is degraded whatever
 * its copies, and says so first, and `noMajority` lets `vol ls` and status say it too
 * (only `vol info` showed it, last among the reasons). Pure.
 */
export function withNoMajority (h: VolumeHealthView, why: string | null | undefined): VolumeHealthView {
  if (why == null || h.noMajority != null) return h
  const reason = `${why}: not readable or writable here until it sees one (it cannot tell whether its copies are the newest)`
  return { ...h, state: 'degraded', reasons: [reason, ...h.reasons], noMajority: why }
}

/** how long an inventory answers for a volume's state before it is taken again (a list request to each live node) */
const INVENTORY_TTL_MS = 5000
/** how long the API waits for an inventory before it answers with the last one */
const INVENTORY_WAIT_MS = 3000
/** how long after a repair of its own a node shows its own view of the volume over an older one of its coordinator */
const OWN_VIEW_AFTER_REPAIR_MS = 60_000
/** how long a coordinator may take before this node begins its own view beside the ask */
const LOCAL_VIEW_AFTER_MS = 1000

export interface VolumeStatesComponents {
  self: string
  repairs: RepairRuns
  status: Pick<StatusService, 'ask'>
  /** the live members with disk */
  live: () => Set<string>
  /** the live nodes that may coordinate a volume (health.ts coordinatorCandidates; default: the live ones) */
  coordinators?: () => Set<string>
  /** the members away under a confirmed restart grace, with when it ends (wall ms): their copies are waited for */
  awayForRestart?: () => ReadonlyMap<string, number>
  members: () => MemberTable
  /** why this node sees no majority of the roll, or null (write-interval-records.ts) */
  noMajority?: () => string | null
  /** why this node's calls cannot reach the node now though membership holds it alive (peer-reach.ts), or null */
  outOfReach?: (node: string) => string | null
  /** why NBD requests to the volume fail through this node now (io-failures.ts), or null */
  ioFailing?: (v: Volume) => string | null
}

export class VolumeStates {
  private readonly c: VolumeStatesComponents
  /** where each volume's copies were at its last inventory here, and who was live then */
  private readonly inventories = new Map<string, { copies: LayerCopies[], live: Set<string>, at: number }>()
  private readonly inventorying = new Map<string, Promise<void>>()

  constructor (components: VolumeStatesComponents) {
    this.c = components
  }

  private get lastRepairs (): Map<string, LastRepair> { return this.c.repairs.last }

  /** drops the inventories of volumes that are gone (`vols`: the volumes there are) */
  forgetGone (vols: readonly Volume[]): void {
    for (const id of this.inventories.keys()) if (!vols.some(v => v.id === id)) this.inventories.delete(id)
  }

  /** a repair of the volume ended: its inventory is taken again */
  async repaired (v: Volume): Promise<void> {
    this.inventories.delete(v.id)
    await this.inventory(v).catch(() => {})
  }

  /** where the copies of every layer of the volume are now, as the live nodes say */
  private async inventory (v: Volume): Promise<void> {
    let p = this.inventorying.get(v.id)
    if (p == null) {
      p = (async () => {
        const live = this.c.live()
        const copies: LayerCopies[] = []
        for (const layer of layersOf(v)) {
          const r = this.c.repairs.repairer(v, layer)
          const inv = await r.inventory()
          const unavailable = await r.unavailable(inv.listed)
          copies.push({ layer, objects: inv.inventory, ...(unavailable != null ? { unavailable: unavailable.length } : {}), ...(inv.unlisted.length > 0 ? { unlisted: inv.unlisted } : {}) })
        }
        this.inventories.set(v.id, { copies, live, at: Date.now() })
      })().finally(() => { this.inventorying.delete(v.id) })
      this.inventorying.set(v.id, p)
    }
    await p
  }

  /** this node's own view of a volume's state (taking an inventory when it has none) */
  async local (v: Volume): Promise<VolumeHealthView> {
    // thin volumes gain objects as they are written: an inventory is good for a few seconds
    const inv0 = this.inventories.get(v.id)
    let slow = false
    // taken again when it is old (not while a repair runs: it takes its own), or when the
    // live nodes changed since, repair or not: a node back makes objects readable again,
    // which a VM's start waits for (rv38: it waited until a long repair ended)
    const liveNow = this.c.live()
    const liveChanged = inv0 != null && (inv0.live.size !== liveNow.size || [...liveNow].some(n => !inv0.live.has(n)))
    if (inv0 == null || liveChanged || (Date.now() - inv0.at > INVENTORY_TTL_MS && !this.c.repairs.isRunning(v.id))) {
      // a node that hangs (not dead yet) must not hang the API: the inventory goes on in the background
      const timer = new Promise<'slow'>(resolve => { setTimeout(() => { resolve('slow') }, INVENTORY_WAIT_MS).unref?.() })
      slow = await Promise.race([this.inventory(v).catch(() => {}), timer]) === 'slow'
    }
    const inv = this.inventories.get(v.id)
    const live = this.c.live()
    const members = this.c.members()
    const nameOf = (id: string): string => { const n = members.get(id)?.advert.name; return n == null ? id : `${n} (${id.slice(-8)})` }
    const h = withNoMajority(volumeHealth({ replicas: v.replicas, minReplicas: v.minReplicas ?? v.replicas, live, copies: inv?.copies ?? null, liveAtInventory: inv?.live, repair: this.c.repairs.progress(v.id), lastRepair: this.lastRepairs.get(v.id) ?? null, ...unsoundOf(v), nameOf, inventoryBy: this.c.self }), this.c.noMajority?.())
    if (slow) h.reasons.push(`a live node did not list its copies within ${INVENTORY_WAIT_MS / 1000} s: the inventory is from ${inv == null ? 'nowhere yet' : new Date(inv.at).toISOString()}`)
    // copies on a member away for a restart are waited for, not made anew (service.ts reconcile)
    // (the inventory asks live nodes only: whether this volume has copies there is not known here)
    const away = [...(this.c.awayForRestart?.() ?? new Map<string, number>())]
    if (away.length > 0 && h.state !== 'healthy') {
      const until = new Date(Math.max(...away.map(([, at]) => at))).toISOString()
      h.reasons.push(`${away.map(([n]) => nameOf(n)).join(', ')} ${away.length === 1 ? 'is' : 'are'} away for a restart: copies there are waited for, not made anew elsewhere, until ${until} (then repair makes them, should ${away.length === 1 ? 'it' : 'they'} not be back)`)
    }
    // a holder whose disk is full refuses the writes to the objects it holds (its advert
    // says so): the volume is not at full strength, and says why (bb33: "healthy" while
    // every write failed)
    // the top layer's copies: those writes go to (a snapshot's are only read)
    const full = fullHolders(inv?.copies.slice(0, 1) ?? [], live, n => members.get(n)?.advert.dataDiskFull ?? null)
    if (full.length > 0) {
      // a repair running (moving copies off it, say) stays repairing
      if (h.state === 'healthy') h.state = 'degraded'
      h.reasons.push(`${full.map(nameOf).join(', ')}, holding copies of it, ${full.length === 1 ? 'has' : 'have'} a full disk: writes to the objects ${full.length === 1 ? 'it holds' : 'they hold'} fail until there is room (vgrid status there says more)`)
    }
    if (slow && h.state === 'healthy') h.state = 'degraded'
    return { ...h, coordinator: coordinatorOf(v.id, this.c.coordinators?.() ?? live) ?? undefined }
  }

  /**
   * The state of each volume as the API shows it: its coordinator's view (asked over
   * the status protocol), with a repair running on this node merged in. A coordinator
   * that does not answer leaves this node's own view, saying so.
   */
  async of (vs: Volume[]): Promise<Map<string, VolumeHealthView>> {
    const out = new Map<string, VolumeHealthView>()
    const live = this.c.live()
    const coordinators = this.c.coordinators?.() ?? live
    const byCoord = new Map<string, Volume[]>()
    const mine: Volume[] = []
    for (const v of vs) {
      const c = coordinatorOf(v.id, coordinators)
      if (c == null || c === this.c.self) mine.push(v)
      else byCoord.set(c, [...(byCoord.get(c) ?? []), v])
    }
    await Promise.all(mine.map(async v => { out.set(v.id, await this.local(v)) }))
    await Promise.all([...byCoord].map(async ([coord, list]) => {
      let answer: StatusAnswer = {}
      let why: string | null = null
      // a coordinator slow to answer (one this node cannot reach while membership holds it
      // alive, in a partial partition) may not answer at all: this node's own view is
      // begun meanwhile, so the API waits for the longer of the two, not for both in turn
      const locals = new Map<string, Promise<VolumeHealthView>>()
      // one this node's calls already found out of reach is not asked (its ask would wait out its timeout)
      const unreached = this.c.outOfReach?.(coord) ?? null
      const begin = setTimeout(() => { for (const v of list) { const p = this.local(v); p.catch(() => {}); locals.set(v.id, p) } }, unreached != null ? 0 : LOCAL_VIEW_AFTER_MS)
      try {
        if (unreached != null) throw new Error(`out of reach from this node: ${unreached}`)
        answer = await this.c.status.ask(coord, list.map(v => v.id), INVENTORY_WAIT_MS + 2000)
      } catch (err) { why = (err as Error).message } finally { if (unreached == null) clearTimeout(begin) }
      for (const v of list) {
        let h = answer[v.id]?.health
        if (h == null) {
          h = await (locals.get(v.id) ?? this.local(v))
          h = { ...h, reasons: [...h.reasons, why != null ? `its repair coordinator ${coord} did not answer (${why}): this node's view` : `its repair coordinator ${coord} has no view of it yet: this node's view`] }
        }
        const here = this.c.repairs.progress(v.id)
        if (here != null && h.repair == null) h = { ...h, repair: here, state: h.state === 'degraded' && live.size >= v.replicas ? 'repairing' : h.state }
        // a repair run here (vol repair through this node) later than the coordinator's
        // last: the one the user just ran. The coordinator's view is older than it (its
        // reasons said what that repair mended: bb24 read "degraded" right after
        // "repaired"): this node's own, whose inventory was taken after it, until the
        // coordinator's next pass (every 30 s) is later.
        // Only for a minute (rv29: a former coordinator's last pass is newer than the new
        // one's for as long as its first pass takes), and never over a repair running there
        const mineLast = this.lastRepairs.get(v.id)
        if (mineLast != null && mineLast.at > (h.lastRepair?.at ?? 0) && Date.now() - mineLast.at < OWN_VIEW_AFTER_REPAIR_MS && h.repair == null && this.c.repairs.progress(v.id) == null) h = await (locals.get(v.id) ?? this.local(v))
        // a scrub run here (vol repair --scrub through this node) that found objects damaged
        // on every copy, and the document could not take it: the coordinator does not know
        // of it (it keeps its own last repair). Once in the document, the document says it
        // (a sound scrub through another node clears it there, not in this node's record)
        const unsound = unrecordedUnsound(this.lastRepairs.get(v.id))
        if (unsound > 0 && unrecordedUnsound(h.lastRepair) === 0 && Object.keys(v.unsound ?? {}).length === 0) h = { ...h, state: 'degraded', reasons: [...h.reasons, `${unsound} object${unsound === 1 ? ' has' : 's have'} blocks damaged on every copy a scrub through this node checked: unreadable there until rewritten`] }
        const unrewritten = this.lastRepairs.get(v.id)?.unrewritten ?? 0
        if (unrewritten > 0 && (h.lastRepair?.unrewritten ?? 0) === 0) h = { ...h, state: 'degraded', reasons: [...h.reasons, `${unrewritten} object${unrewritten === 1 ? ' is' : 's are'} damaged on every copy a scrub through this node checked, each block sound on some copy (reads succeed), but the copies could not be rewritten`] }
        // what this node refuses is its own to say, whatever the coordinator sees
        out.set(v.id, withNoMajority(h, this.c.noMajority?.()))
      }
    }))
    // requests that fail through this node are its own to say too (bb35: every write
    // failed, a holder's store refusing them, while the volume showed healthy)
    for (const v of vs) {
      const failing = this.c.ioFailing?.(v)
      const h = out.get(v.id)
      if (failing != null && h != null) out.set(v.id, { ...h, state: h.state === 'healthy' ? 'degraded' : h.state, reasons: [...h.reasons, failing] })
    }
    return out
  }
}

/** the live nodes holding copies of the volume (at its inventory) whose disk is full (`fullWhy`: their advert's reason, null when not). Pure. */
export function fullHolders (copies: readonly LayerCopies[], live: ReadonlySet<string>, fullWhy: (node: string) => string | null): string[] {
  const holding = new Set(copies.flatMap(c => [...c.objects.values()].flat()))
  return [...holding].filter(n => live.has(n) && fullWhy(n) != null).sort()
}

/**
 * The objects the volume's record says are damaged on every copy, of the layers it or
 * its snapshots still read (one folded away is read by nothing), and a few of them
 * named: `object 1 of /shop/db@nightly`
 */
export function unsoundOf (v: Volume): { unsound: number, unsoundNames: string[] } {
  const read = referencedLayers([v])
  const keys = Object.keys(v.unsound ?? {}).filter(k => read.has(k.slice(0, k.lastIndexOf('/')))).sort()
  // a layer of another volume (a clone's source) is left as it is, for the API to name with every volume (routes.ts)
  const say = (layer: string): string => layerNumber(layer).base === v.id ? sayLayers(layer, [v]) : layer
  return { unsound: keys.length, unsoundNames: keys.slice(0, 5).map(k => `object ${k.slice(k.lastIndexOf('/') + 1)} of ${say(k.slice(0, k.lastIndexOf('/')))}`) }
}
