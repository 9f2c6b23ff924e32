// Declared connections ("links"), pure: validating a request to create one against
// the document, and the views the API and CLI show.
import { createHash } from 'node:crypto'
import { ConflictError, NotFoundError, ValidationError, onlyFields } from '../errors.ts'
import { TERMINAL_RE } from '../../crdt/index.ts'
import type { Link } from './rules.ts'

export interface LinkRequest {
  from: { vm: string, terminal: string }
  to: { vm: string, terminal: string }
  protocol: 'tcp' | 'udp'
  port: number
}

/** What validation reads of the document. */
export interface LinkDoc {
  /** VM ids, with the terminals each declared when it was created (absent: those its links use) and when it was made */
  vms: ReadonlyMap<string, { inputs?: string[], outputs?: string[], created?: number }>
  links: Link[]
}

/**
 * How long a link create waits after its write for what other nodes wrote at the same
 * moment to arrive (a link from the same output, a removal of an end's VM) before it
 * answers: the claims' settle window, which a VM create waits as long for its name.
 */
export const LINK_SETTLE_MS = 1500

/** what GET /v1/links adds to an end (routes.ts): shown, never taken from a request */
const END_VIEW_FIELDS = new Set(['node', 'nodeName', 'address', 'down'])

function endpointOf (v: unknown, field: string): { vm: string, terminal: string } {
  let vm: unknown
  let terminal: unknown
  if (typeof v === 'string') {
    const i = v.lastIndexOf('.')
    if (i <= 0) throw new ValidationError(field, `${field}: "${v}" is not VM.TERMINAL`)
    vm = v.slice(0, i)
    terminal = v.slice(i + 1)
  } else if (v != null && typeof v === 'object' && !Array.isArray(v)) {
    // refused as at the top level: a field this agent does not know is a mistake, not
    // ignored; those GET /v1/links shows of an end (where it runs: a string or null) are
    // taken and ignored, so its `from` and `to` can be sent back as they are
    const unknown = Object.keys(v).find(k => k !== 'vm' && k !== 'terminal' && !(END_VIEW_FIELDS.has(k) && ((v as Record<string, unknown>)[k] === null || typeof (v as Record<string, unknown>)[k] === 'string')))
    if (unknown !== undefined) throw new ValidationError(`${field}.${unknown}`, `${field}: unknown field ${JSON.stringify(unknown)} (an end takes vm, terminal)`)
    vm = (v as Record<string, unknown>).vm
    terminal = (v as Record<string, unknown>).terminal
  } else {
    throw new ValidationError(field, `${field}: ${v == null ? 'missing' : `a ${Array.isArray(v) ? 'list' : typeof v}`}: give "VM.TERMINAL" or {"vm","terminal"}`)
  }
  if (typeof vm !== 'string' || vm === '' || vm.length > 128) throw new ValidationError(`${field}.vm`, `${field}.vm: must be a VM id`)
  if (typeof terminal !== 'string' || !TERMINAL_RE.test(terminal)) throw new ValidationError(`${field}.terminal`, `${field}.terminal: ${JSON.stringify(terminal)} is not a terminal name (a letter, then letters, digits, _ or -, at most 63)`)
  return { vm, terminal }
}

/** Parses a POST /v1/links body; ValidationError names the field that is wrong. */
export function parseLinkRequest (body: unknown): LinkRequest {
  if (body == null || typeof body !== 'object' || Array.isArray(body)) throw new ValidationError('body', 'body: must be a JSON object')
  const b = body as Record<string, unknown>
  onlyFields(b, ['from', 'to', 'protocol', 'port'])
  const from = endpointOf(b.from, 'from')
  const to = endpointOf(b.to, 'to')
  // TCP and UDP as commonly written are the same protocols; none given is tcp, as in the CLI
  const protocol = b.protocol === undefined ? 'tcp' : typeof b.protocol === 'string' ? b.protocol.toLowerCase() : b.protocol
  if (protocol !== 'tcp' && protocol !== 'udp') throw new ValidationError('protocol', `protocol: ${JSON.stringify(b.protocol)} is not tcp or udp`)
  if (typeof b.port !== 'number' || !Number.isInteger(b.port) || b.port < 1 || b.port > 65535) throw new ValidationError('port', `port: ${JSON.stringify(b.port)} is not a port (1-65535)`)
  return { from, to, protocol, port: b.port }
}

/** A link's id: derived from what it connects, so the same request twice is the same link. */
export function linkId (r: LinkRequest): string {
  const h = createHash('sha256').update(JSON.stringify([r.from.vm, r.from.terminal, r.to.vm, r.to.terminal, r.protocol, r.port])).digest('hex')
  return `link-${h.slice(0, 16)}`
}

/**
 * The declared terminal a name means (pure): compared ignoring case, as vm create
 * compares them for duplicates (they are host names inside the VM), so `web.DB` is
 * the output `db`. The declared spelling is returned: the link, its id and the rules
 * use that one. Undefined when none matches.
 */
export function matchTerminal (declared: readonly string[], name: string): string | undefined {
  return declared.find(d => d === name) ?? declared.find(d => d.toLowerCase() === name.toLowerCase())
}

/**
 * Checks a request against the document: both VMs exist, each declared the terminal
 * (an output on the `from` VM, an input on the `to` VM), the link is new, and the
 * output is not connected yet (an output goes to exactly one input; an input takes many).
 * The link names the terminals as their VMs declared them.
 */
export function checkLink (req: LinkRequest, doc: LinkDoc): Link {
  const ends: { from?: LinkRequest['from'], to?: LinkRequest['to'] } = {}
  for (const [field, e, kind] of [['from', req.from, 'outputs'], ['to', req.to, 'inputs']] as const) {
    const vm = doc.vms.get(e.vm)
    if (vm == null) throw new NotFoundError(`${field}: no VM "${e.vm}"`)
    // a VM from before terminals were declared has the ones its links already use
    const declared = vm[kind] ?? doc.links.flatMap(l => kind === 'outputs' ? (l.from.vm === e.vm ? [l.from.terminal] : []) : (l.to.vm === e.vm ? [l.to.terminal] : []))
    const what = kind === 'outputs' ? 'output' : 'input'
    const terminal = matchTerminal(declared, e.terminal)
    if (terminal == null) {
      // the ends given the other way round (bb46: `link create db.in cli.db`): FROM is an output
      const other = kind === 'outputs' ? 'inputs' : 'outputs'
      const swapped = matchTerminal(vm[other] ?? [], e.terminal) != null
      const hint = swapped ? `; ${e.vm}.${e.terminal} is an ${what === 'output' ? 'input' : 'output'}: a link goes from an output (first) to an input (second): vgrid link create ${req.to.vm}.${req.to.terminal} ${req.from.vm}.${req.from.terminal}?` : ''
      throw new NotFoundError(`${field}: VM "${e.vm}" has no ${what} terminal "${e.terminal}" (${declared.length > 0 ? `its ${kind}: ${declared.join(', ')}` : `it has no ${kind}: a VM's terminals are declared when it is created, with vgrid vm create --${what} NAME (the API's "${kind}"), or added later with vgrid vm update ${e.vm} --${what} NAME`})${hint}`)
    }
    ends[field] = { vm: e.vm, terminal }
  }
  const r: LinkRequest = { ...req, from: ends.from!, to: ends.to! }
  if (r.from.vm === r.to.vm) throw new ValidationError('to', 'to: a VM cannot be connected to itself')
  const id = linkId(r)
  // a link whose VM went (removed through one node while the link was made through
  // another) connects nothing: it holds no output (it held one for good) and is no
  // duplicate (made again, the link is written anew for the VMs as they are)
  const standing = standingLinks(doc.links, doc.vms).links
  if (standing.some(l => l.id === id)) throw new ConflictError(`link ${id} exists already`, 'duplicate')
  const taken = standing.find(l => l.from.vm === r.from.vm && l.from.terminal === r.from.terminal)
  if (taken != null) throw new ConflictError(`output ${r.from.vm}.${r.from.terminal} is connected already (to ${taken.to.vm}.${taken.to.terminal} by ${taken.id})`, 'output-connected')
  return { id, from: r.from, to: r.to, protocol: r.protocol, port: r.port }
}

/**
 * The links made for a former VM of an end's name (pure): a link records the `created`
 * of each end's VM, and one made while that VM was being removed on another node
 * (bb27: `vm rm s1` and `link create c1.o s1.i` at once) must not connect a VM made
 * again under the name; such links carry nothing, with the reason, until removed.
 */
export function formerVmLinks<L extends Link> (links: readonly L[], createdOf: (vm: string) => number | undefined): { links: L[], skipped: Array<{ link: string, reason: string }> } {
  const out: L[] = []
  const skipped: Array<{ link: string, reason: string }> = []
  for (const l of links) {
    const former = [l.from, l.to].find(e => e.created != null && createdOf(e.vm) != null && createdOf(e.vm) !== e.created)
    if (former == null) out.push(l)
    else skipped.push({ link: l.id, reason: `made for a former VM named ${former.vm}, removed since (this ${former.vm} was made after): remove the link, and make it again if this VM should have it` })
  }
  return { links: out, skipped }
}

/**
 * The end of a link whose VM is gone (pure): removed (through one node while the link
 * was made through another: each checked its own copy), or removed and made again (a
 * VM made since under the name is another one: formerVmLinks). Null while both stand.
 */
export function goneEnd (l: Link, vms: ReadonlyMap<string, { created?: number }>): { end: 'from' | 'to', vm: string, madeAgain: boolean } | null {
  for (const end of ['from', 'to'] as const) {
    const e = l[end]
    const v = vms.get(e.vm)
    if (v == null) return { end, vm: e.vm, madeAgain: false }
    if (e.created != null && v.created != null && e.created !== v.created) return { end, vm: e.vm, madeAgain: true }
  }
  return null
}

/**
 * The links whose VMs both still stand (pure), the same on every node; the others are
 * skipped with the reason until removed, and take no output's place (oneLinkPerOutput
 * runs over these): a link left by a VM removed while it was made blocked its output
 * for good, naming a VM that no longer existed.
 */
export function standingLinks<L extends Link> (links: readonly L[], vms: ReadonlyMap<string, { created?: number }>): { links: L[], skipped: Array<{ link: string, reason: string }> } {
  const out: L[] = []
  const skipped: Array<{ link: string, reason: string }> = []
  for (const l of links) {
    const g = goneEnd(l, vms)
    if (g == null) out.push(l)
    else if (g.madeAgain) skipped.push(...formerVmLinks([l], vm => vms.get(vm)?.created).skipped)
    else skipped.push({ link: l.id, reason: `VM ${g.vm} no longer exists (removed while this link was made through another node): the link connects nothing and holds no output; remove it` })
  }
  return { links: out, skipped }
}

/**
 * A link this node wrote, judged once its create waited the settle window (pure; the
 * document as it is then): the error its request is answered with, after which the
 * link is removed, or null if it stands. Two nodes that each took a link from one
 * output at the same moment each checked only their own copy; the one that is not
 * the output's link by oneLinkPerOutput's rule (`at`, then id) lost, as a sequential
 * create would have, and says so naming the winner. An end's VM removed through
 * another node meanwhile: the link would connect nothing, as a create after the
 * removal would have been told. A link removed meanwhile (link rm) is not judged.
 */
export function lostLink (made: Link, links: ReadonlyArray<Link & { at: number }>, vms: ReadonlyMap<string, { created?: number }>): ConflictError | NotFoundError | null {
  const g = goneEnd(made, vms)
  if (g != null) {
    return g.madeAgain
      ? new ConflictError(`${g.end}: VM "${g.vm}" was removed through another node while this link was made (the "${g.vm}" there now was made since, and is another VM); this link was removed: make it again to connect that one`, 'vm_removed')
      : new NotFoundError(`${g.end}: no VM "${g.vm}": it was removed through another node while this link was made; this link was removed`)
  }
  const standing = standingLinks(links, vms).links
  if (!standing.some(l => l.id === made.id)) return null
  const first = oneLinkPerOutput(standing).links.find(l => l.from.vm === made.from.vm && l.from.terminal === made.from.terminal)
  if (first == null || first.id === made.id) return null
  return new ConflictError(`output ${made.from.vm}.${made.from.terminal} is connected already (to ${first.to.vm}.${first.to.terminal} by ${first.id}): that link was made through another node at the same moment, and first; this one was removed`, 'output-connected')
}

/**
 * One link per output, the same on every node: two agents that each took a request for
 * one output at the same moment both wrote a link (each checked its own document). The
 * earliest written (`at`, then id) is the output's link; the others are skipped, with
 * the reason, until one is removed.
 */
export function oneLinkPerOutput<L extends Link & { at: number }> (links: readonly L[]): { links: L[], skipped: Array<{ link: string, reason: string }> } {
  const kept = new Map<string, L>()
  const skipped: Array<{ link: string, reason: string }> = []
  for (const l of [...links].sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
    const out = `${l.from.vm}.${l.from.terminal}`
    const first = kept.get(out)
    if (first == null) kept.set(out, l)
    else skipped.push({ link: l.id, reason: `output ${out} is connected already, by ${first.id} (made first); remove one of them` })
  }
  return { links: [...kept.values()], skipped }
}

export interface LinkEnd { vm: string, terminal: string, node: string | null, nodeName: string | null, address: string | null, down?: string | null }

export interface LinkView {
  id: string
  /**
   * `node`: where the VM runs (its id), `nodeName`: that node's name; `down`: why the VM
   * carries nothing now (stopped, failed, no VM of that name), null while it runs or is
   * on its way to
   */
  from: LinkEnd
  to: LinkEnd
  protocol: string
  port: number | null
  /**
   * the WireGuard peer that carries it from this node, null when both ends are local or
   * unplaced; `down`: why that tunnel carries nothing now (no handshake for too long,
   * tunnel-health.ts), null while it is up
   */
  tunnel: { node: string, name: string | null, publicKey: string, down: string | null } | null
  /**
   * packets allowed for it, and packets dropped between its two VMs, as counted where
   * its FROM end runs (link-counts.ts); 0 when `counts.error` says why they are not known
   */
  packets: number
  drops: number
  /**
   * where they were counted: the node of the FROM end (null: it runs nowhere); `error`:
   * why that node's counts are not here; `tunnelDown`: that node's word that its tunnel
   * for the link (to the TO end's node) carries nothing now, and why (null while up, or
   * not known), so that a node holding neither end shows it too
   */
  counts: { node: string | null, name: string | null, error: string | null, tunnelDown?: string | null }
  /** why this node does not enforce it, when it does not */
  skipped: string | null
  /**
   * how it goes from this node: both ends here (`local`), through a tunnel (`tunnel`),
   * one end here and no tunnel to the other's node (`no-tunnel`: `noTunnel` names that
   * node and says why: its agent away, no WireGuard there), neither end here
   * (`elsewhere`), or an end not placed (`unplaced`)
   */
  path: 'local' | 'tunnel' | 'no-tunnel' | 'elsewhere' | 'unplaced'
  noTunnel: { node: string, name: string | null, why: string } | null
}

/**
 * What a member's death as this node sees it may really be (pure): when this node hears
 * no majority of the members, it may be the one cut off (bb44: a node
 * without a majority said every other end's agent was dead). '' otherwise.
 */
export function cutOffHere (members: Iterable<{ state: string }>): string {
  let others = 0
  let heard = 0
  for (const m of members) {
    if (m.state === 'left') continue
    others++
    if (m.state === 'alive' || m.state === 'suspect') heard++
  }
  // no majority of the members this node's gossip knows, itself counted: a hint only (the
  // fence counts the roll, which a forgotten member has left: rv45)
  return others > 0 && (heard + 1) * 2 <= others + 1 ? ` (this node hears ${heard} of the ${others} other members, no majority: it may be the one cut off)` : ''
}

/** Why this node has no tunnel to `node` (pure): its member state, or what its advert lacks. */
export function whyNoTunnel (m: { state: string, advert: { wireguard?: unknown } } | undefined, rejected?: string, cutOff = ''): string {
  if (m == null) return 'that node is not in sight of this one'
  if (m.state === 'left') return 'its agent is away (left: stopped for a restart, or gone)'
  if (m.state === 'dead') return `its agent is dead as this node sees it${cutOff}`
  if (rejected != null) return `its WireGuard advert is refused: ${rejected}`
  if (m.advert.wireguard == null) return 'it advertises no WireGuard tunnel (its overlay is off or cannot start)'
  return 'no tunnel set up yet'
}

/**
 * The names a VM resolves, terminal name -> peer address: for each of its outputs the
 * address of the VM at the other end (an output connects to exactly one input). A
 * `process` VM gets them in /etc/hosts and its environment, a `qemu` guest on its
 * kernel command line, so appliances are configured by terminal names.
 */
export function terminalHosts (vm: string, links: Link[], addressOf: (vm: string) => string | null, outputs?: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const l of [...links].sort((a, b) => a.id < b.id ? -1 : 1)) {
    if (l.from.vm !== vm) continue
    // an output the VM no longer declares (vm update) names nothing: its link carries nothing (rules.ts)
    if (outputs != null && !outputs.includes(l.from.terminal)) continue
    const a = addressOf(l.to.vm)
    if (a != null) out[l.from.terminal] = a
  }
  return out
}
