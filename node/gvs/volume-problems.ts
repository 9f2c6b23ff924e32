// The `volumes-degraded` problem /v1/status shows: the volumes not at full redundancy
// (degraded or repairing), with the states `vgrid vol ls` shows. A volume's state costs
// an inventory of its copies (volume-states.ts), so an answer is kept for REFRESH_MS,
// and a status request waits for a new one at most WAIT_MS: a node that hangs must not
// hang `vgrid status` (it answers with the last states meanwhile).
import type { Volume } from '../../crdt/index.ts'
import type { HealthProblem } from '../api/types.ts'
import { stateText } from './cli-format.ts'
import type { VolumeHealthView } from './health.ts'

const REFRESH_MS = 5000
const WAIT_MS = 2000
/** volumes named in the message; the rest are counted */
const NAMED = 5

/** The problem for these volumes' states (pure): null when every one is healthy. */
export function degradedProblem (vols: readonly Volume[], states: ReadonlyMap<string, VolumeHealthView>): Omit<HealthProblem, 'since'> | null {
  const bad = vols.flatMap(v => {
    const h = states.get(v.id)
    return h == null || h.state === 'healthy' ? [] : [{ v, h }]
  }).sort((a, b) => a.v.path < b.v.path ? -1 : a.v.path > b.v.path ? 1 : 0)
  if (bad.length === 0) return null
  // a node with no majority refuses all I/O of every volume: said first, once, and each
  // volume's first reason besides it
  const blind = bad.find(({ h }) => h.noMajority != null)?.h.noMajority
  const reasonOf = (h: VolumeHealthView): string | undefined => h.noMajority != null ? h.reasons[1] : h.reasons[0]
  const named = bad.slice(0, NAMED).map(({ v, h }) => `${v.path} ${stateText(h)}${reasonOf(h) != null ? ` (${reasonOf(h)!})` : ''}`)
  const more = bad.length > NAMED ? `; and ${bad.length - NAMED} more (vgrid vol ls)` : ''
  const lead = blind == null ? '' : `${blind}: no read or write of any volume is done here until it sees one (it cannot tell whether its copies are the newest); `
  return { service: 'gvs', cause: 'volumes-degraded', message: `${lead}${bad.length} volume(s) are not at full redundancy: ${named.join('; ')}${more}` }
}

export interface VolumeProblemsComponents {
  volumes: () => Volume[]
  /** the states as the API shows them (GvsService.health) */
  states: (vs: Volume[]) => Promise<Map<string, VolumeHealthView>>
  now?: () => number
}

export class VolumeProblems {
  private readonly c: VolumeProblemsComponents
  private last: { at: number, problem: Omit<HealthProblem, 'since'> | null } | null = null
  private refreshing: Promise<void> | null = null
  /** since when the problem has lasted (kept across refreshes while it does) */
  private since: number | null = null

  constructor (components: VolumeProblemsComponents) {
    this.c = components
  }

  private now (): number { return (this.c.now ?? Date.now)() }

  private refresh (): Promise<void> {
    this.refreshing ??= (async () => {
      const vols = this.c.volumes()
      const problem = vols.length === 0 ? null : degradedProblem(vols, await this.c.states(vols))
      const at = this.now()
      if (problem == null) this.since = null
      else this.since ??= at
      this.last = { at, problem }
    })().catch(() => {}).finally(() => { this.refreshing = null })
    return this.refreshing
  }

  async problems (): Promise<HealthProblem[]> {
    if (this.last == null || this.now() - this.last.at >= REFRESH_MS) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([this.refresh(), new Promise<void>(resolve => { timer = setTimeout(resolve, WAIT_MS) })])
      clearTimeout(timer)
    }
    const p = this.last?.problem
    return p == null ? [] : [{ ...p, since: new Date(this.since ?? this.now()).toISOString() }]
  }
}
