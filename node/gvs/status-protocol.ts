// `/vgrid/gvs/status/1.0.0`: one agent asks another what it knows of some volumes:
// the state it computed as their repair coordinator (inventory, repair progress) and
// how many NBD writers it serves them to. The API answers with the coordinator's view
// (merged with its own), and a destroy asks every live node whether a writer has the
// volume open. One stream per request; a length-prefixed JSON request and answer.
import type { Libp2p } from '@libp2p/interface'
import { Type } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { request, serve } from '../p2p/request.ts'
import type { VolumeHealthView } from './health.ts'

export const STATUS_PROTOCOL = '/vgrid/gvs/status/1.0.0'
const MAX_REQUEST = 256 * 1024
const MAX_REPLY = 4 * 1024 * 1024
export const MAX_STATUS_VOLUMES = 4096

export interface VolumeStatus {
  /** set when this node coordinates the volume's repair or runs one */
  health?: VolumeHealthView
  /** NBD sessions on this node that wrote to the volume lately */
  writers: number
  /** of `writers`, those of a VM's disk (absent: none, or an agent that predates it) */
  vmDisks?: number
  /**
   * Answering a `claim`: a session here is claiming the volume at this moment (it asked
   * and waits for answers); `writers` then counts only the sessions that already write.
   * A claim here from a node with a larger id than the asker's lost by this answer.
   */
  claiming?: boolean
}

export type StatusAnswer = Record<string, VolumeStatus>

/**
 * The volume ids of a request, or why it is not one. `writersOnly`: the asker wants
 * only the writer counts (a session about to write), which are answered at once; the
 * health a coordinator adds may wait on an inventory. Agents that predate it answer
 * the health too.
 */
export function parseStatusRequest (raw: unknown): { volumes: string[], writersOnly: boolean, claim: boolean } {
  const vs = (raw as { volumes?: unknown } | null)?.volumes
  if (!Array.isArray(vs) || vs.length > MAX_STATUS_VOLUMES || !vs.every(v => typeof v === 'string' && v.length > 0 && v.length <= 256)) {
    throw new Error(`a status request is {"volumes": [ids]} with at most ${MAX_STATUS_VOLUMES} ids`)
  }
  const o = raw as { writersOnly?: unknown, claim?: unknown }
  return { volumes: vs as string[], writersOnly: o.writersOnly === true || o.claim === true, claim: o.claim === true }
}

const count = Type.Number({ minimum: 0 })
const text = Type.String({ maxLength: 4096 })
// a peer's health view as vol ls and info print it: any field of another type (a reason
// that is a number) made the whole volume list answer 500 on every node that asked it
const HealthSchema = TypeCompiler.Compile(Type.Object({
  state: Type.Union([Type.Literal('healthy'), Type.Literal('degraded'), Type.Literal('repairing')]),
  reasons: Type.Array(text, { maxItems: 256 }),
  repair: Type.Optional(Type.Union([Type.Null(), Type.Object({ node: text, startedAt: Type.Number(), done: count, total: count, bytes: count, failed: count })])),
  lastRepair: Type.Optional(Type.Union([Type.Null(), Type.Object({
    node: text,
    at: Type.Number(),
    copied: count,
    failed: count,
    bytes: count,
    lost: count,
    unsound: Type.Optional(count),
    unsoundRecorded: Type.Optional(Type.Literal(true)),
    unrewritten: Type.Optional(count),
    scrubbedAt: Type.Optional(Type.Number()),
    freed: Type.Optional(count),
    unavailable: Type.Optional(count),
    unavailableWhy: Type.Optional(text)
  })])),
  coordinator: Type.Optional(text),
  noMajority: Type.Optional(text),
  copiesOn: Type.Optional(Type.Unknown()),
  unreadable: Type.Optional(count)
}))

/** an answer as far as it has the expected shape: entries of another shape are dropped, a health view of another shape is left out */
export function parseStatusAnswer (raw: unknown): StatusAnswer {
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('a status answer is a JSON object')
  const out: StatusAnswer = {}
  for (const [id, s] of Object.entries(raw as Record<string, unknown>)) {
    const x = s as Partial<VolumeStatus> | null
    if (x == null || typeof x !== 'object' || typeof x.writers !== 'number') continue
    const h = x.health
    const okHealth = h == null || HealthSchema.Check(h)
    const claiming = { ...(x.claiming === true ? { claiming: true } : {}), ...(typeof x.vmDisks === 'number' && x.vmDisks > 0 ? { vmDisks: x.vmDisks } : {}) }
    out[id] = okHealth ? { writers: x.writers, ...claiming, ...(h != null ? { health: withCopies(h) } : {}) } : { writers: x.writers, ...claiming }
  }
  return out
}

/** a health view's copies per node kept only as a record of counts (a peer's junk there is dropped, not shown) */
function withCopies (h: VolumeHealthView): VolumeHealthView {
  const c = h.copiesOn as unknown
  if (c === undefined) return h
  const ok = c != null && typeof c === 'object' && !Array.isArray(c) && Object.values(c).every(n => Number.isSafeInteger(n) && (n as number) >= 0)
  if (ok) return h
  const { copiesOn: _, ...rest } = h
  return rest
}

export interface StatusServiceComponents {
  host: Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol' | 'peerId'>
  /** this node's answer (`claim`: the asker, `from`, is about to write them) */
  answer: (volumes: string[], o: { writersOnly: boolean, claim?: { from: string } }) => Promise<StatusAnswer>
}

export class StatusService {
  private readonly c: StatusServiceComponents
  constructor (components: StatusServiceComponents) { this.c = components }

  async start (): Promise<void> {
    await serve(this.c.host, STATUS_PROTOCOL, async (raw, from) => {
      const r = parseStatusRequest(raw)
      return await this.c.answer(r.volumes, { writersOnly: r.writersOnly, ...(r.claim ? { claim: { from } } : {}) })
    }, { maxRequestBytes: MAX_REQUEST, maxInboundStreams: 32 })
  }

  async stop (): Promise<void> { await this.c.host.unhandle(STATUS_PROTOCOL).catch(() => {}) }

  /**
   * asks one node; throws when it does not answer within `timeoutMs`, or refuses.
   * `claim`: this node is about to write the volumes (writers.ts), answered with writers only.
   */
  async ask (peer: string, volumes: string[], timeoutMs = 2000, o: { writersOnly?: boolean, claim?: boolean } = {}): Promise<StatusAnswer> {
    const writersOnly = o.writersOnly === true || o.claim === true
    const self = this.c.host.peerId.toString()
    if (peer === self) return await this.c.answer(volumes, { writersOnly, ...(o.claim === true ? { claim: { from: self } } : {}) })
    const raw = await request(this.c.host, peer, STATUS_PROTOCOL, { volumes, ...(writersOnly ? { writersOnly } : {}), ...(o.claim === true ? { claim: true } : {}) }, { timeoutMs, maxAnswerBytes: MAX_REPLY })
    const refused = (raw as { error?: unknown } | null)?.error
    if (typeof refused === 'string') throw new Error(`${peer} refused the status request: ${refused}`)
    return parseStatusAnswer(raw)
  }
}
