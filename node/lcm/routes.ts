// API routes of the LCM: /v1/links (declared connections: list, create, show,
// remove) and /v1/net (this agent's WireGuard interface, peers and link rules).
import type { FastifyInstance } from 'fastify'
import { NotFoundError, ValidationError, quoteGiven } from '../errors.ts'
import type { MemberTable } from '../../protocol/membership.ts'
import { LINK_SETTLE_MS, checkLink, cutOffHere, lostLink, parseLinkRequest, whyNoTunnel, type LinkDoc, type LinkView } from './links.ts'
import { NEITHER_END_HERE, type Link } from './rules.ts'
import type { LcmReader, LcmView } from './types.ts'
import type { LinkCounts } from './link-counts.ts'
import { overlayDownReason } from './health.ts'

type Lcm = Pick<LcmView, 'status' | 'peerStates' | 'counters' | 'drops' | 'schedule' | 'settled' | 'state' | 'last' | 'members' | 'selfId' | 'table' | 'linkCounts'> & Partial<Pick<LcmView, 'unreachedBy' | 'askCounts' | 'linkSettleMs'>>

const linksOf = (r: LcmReader): Link[] => r.list('connections').map(c => ({ id: c.id, from: c.from, to: c.to, protocol: c.protocol, port: c.port }))
const links = (lcm: Lcm): Link[] => linksOf(lcm.state.read())

/** the VMs with their declared terminals and when each was made */
const vmsOf = (r: LcmReader): LinkDoc['vms'] => new Map(r.list('vms').map(v => [v.id, { inputs: v.spec.inputs, outputs: v.spec.outputs, created: v.created }]))

/** what checkLink reads: the VMs, and the links */
const linkDoc = (r: LcmReader): LinkDoc => ({ vms: vmsOf(r), links: linksOf(r) })

/** the members other than this node */
const othersOf = (lcm: Lcm): Array<{ state: string }> => [...lcm.members].filter(([id]) => id !== lcm.selfId).map(([, m]) => m)

async function views (lcm: Lcm, list: Link[]): Promise<LinkView[]> {
  const last = lcm.last
  const place = new Map((last?.addr.vms ?? []).map(v => [v.vm, v]))
  const tunnels = new Map((last?.plan.tunnels ?? []).map(t => [t.node, t]))
  const flows = new Map((last?.rules.flows ?? []).map(f => [f.link, f]))
  const skipped = new Map((last?.rules.skipped ?? []).map(s => [s.link, s.reason]))
  const status = lcm.status()
  const down = new Map((status.tunnelsDown ?? []).map(d => [d.node, d]))
  // this node's own WireGuard not running: every tunnel from here is down, whatever its handshakes said
  const overlayDown = overlayDownReason(status)
  const rejected = new Map((last?.plan.rejected ?? []).map(x => [x.node, x.detail]))
  const counted = await countsWhereCounted(lcm, list, place)
  const r = lcm.state.read()
  const vms = new Map(r.list('vms').map(v => [v.id, v]))
  const leases = new Map(r.list('leases').map(x => [x.vm, x]))
  // why an end's VM carries nothing now (a link to a stopped VM looked as live as any)
  const endDown = (vm: string): string | null => {
    const v = vms.get(vm)
    if (v == null) return 'no such VM'
    const st = leases.get(vm)?.status
    if (st === 'stopped' || st === 'failed') return st
    // made stopped, or parked: no lease, nothing runs to stop
    if (v.desired === 'stopped') return st == null ? 'stopped' : 'stopping'
    return null
  }
  // membership's word that the tunnel's node is out of reach here comes seconds after a
  // cut; the handshakes stop being fresh only after half a minute (tunnel-health.ts), and
  // then say less (bb42: "a partial partition" gave way to "nothing received" after 35 s)
  const cutOff = (node: string): string | null => {
    const by = lcm.unreachedBy?.(node)
    return by == null ? null : `this node does not reach ${nameOf(lcm.members, node) ?? node} on the network while ${nameOf(lcm.members, by) ?? by} does (a partial partition)`
  }
  return list.map(l => {
    const s = place.get(l.from.vm)
    const d = place.get(l.to.vm)
    const remote = s?.node === lcm.selfId ? d?.node : d?.node === lcm.selfId ? s?.node : null
    const t = remote == null || remote === lcm.selfId ? undefined : tunnels.get(remote)
    const path: LinkView['path'] = s?.node == null || d?.node == null
      ? 'unplaced'
      : remote == null ? 'elsewhere' : remote === lcm.selfId ? 'local' : t != null ? 'tunnel' : 'no-tunnel'
    const f = flows.get(l.id)
    const n = counted.get(l.id)
    return {
      id: l.id,
      from: { ...l.from, node: s?.node ?? null, nodeName: nameOf(lcm.members, s?.node ?? null), address: s?.address ?? null, down: endDown(l.from.vm) },
      to: { ...l.to, node: d?.node ?? null, nodeName: nameOf(lcm.members, d?.node ?? null), address: d?.address ?? null, down: endDown(l.to.vm) },
      protocol: l.protocol,
      port: l.port,
      tunnel: t == null ? null : { node: t.node, name: nameOf(lcm.members, t.node), publicKey: t.publicKey, down: overlayDown ?? cutOff(t.node) ?? (down.get(t.node)?.links.includes(l.id) === true ? down.get(t.node)!.reason : null) },
      packets: n?.packets ?? 0,
      drops: n?.drops ?? 0,
      counts: { node: s?.node ?? null, name: nameOf(lcm.members, s?.node ?? null), error: n?.error ?? null, tunnelDown: n?.down ?? null },
      // nothing for this node to enforce on a link whose ends are elsewhere or not placed
      skipped: f == null ? realSkip(skipped.get(l.id)) ?? (path === 'elsewhere' || path === 'unplaced' ? null : 'not computed yet') : null,
      path,
      noTunnel: path === 'no-tunnel' ? { node: remote!, name: nameOf(lcm.members, remote!), why: whyNoTunnel(lcm.members.get(remote!), rejected.get(remote!), cutOffHere(othersOf(lcm))) } : null
    }
  })
}

/**
 * Each link's counts from the node its FROM end runs on (link-counts.ts): this node's
 * own, or asked of that node, one question per node at once. A node that cannot be
 * asked (dead, out of reach, not answering) leaves its links' counts out, saying why.
 */
async function countsWhereCounted (lcm: Lcm, list: Link[], place: ReadonlyMap<string, { node: string | null }>): Promise<Map<string, LinkCounts & { error?: string }>> {
  const byNode = new Map<string, string[]>()
  for (const l of list) {
    const node = place.get(l.from.vm)?.node
    if (node != null) byNode.set(node, [...byNode.get(node) ?? [], l.id])
  }
  const out = new Map<string, LinkCounts & { error?: string }>()
  await Promise.all([...byNode].map(async ([node, ids]) => {
    const name = nameOf(lcm.members, node) ?? node
    let got: Map<string, LinkCounts> | undefined
    let error: string | undefined
    const m = lcm.members.get(node)
    if (node === lcm.selfId) got = await lcm.linkCounts(ids)
    else if (lcm.askCounts == null) error = `counted on ${name}, which this agent cannot ask`
    else if (m == null || m.state !== 'alive') error = `counted on ${name}, which is ${m?.state ?? 'not a member this node knows'}${m?.state === 'dead' ? cutOffHere(othersOf(lcm)) : ''}`
    else if (lcm.unreachedBy?.(node) != null) error = `counted on ${name}, which this node does not reach (a partial partition)`
    else {
      try {
        got = await lcm.askCounts(node, ids)
      } catch (err) {
        error = `counted on ${name}, which did not answer: ${(err as Error).message}`
      }
    }
    for (const id of ids) {
      const c = got?.get(id)
      out.set(id, c != null ? c : { packets: 0, drops: 0, error: error ?? `${name} did not answer for it (an agent of an earlier release?)` })
    }
  }))
  return out
}

export interface NetView {
  status: ReturnType<LcmView['status']>
  peers: Array<{ node: string | null, name: string | null, publicKey: string, endpoint: string | null, allowedIps: string[], latestHandshake: string | null, rxBytes: number, txBytes: number }>
  rules: { table: string, flows: number, skipped: Array<{ link: string, reason: string }> }
  /** `spoofed`: the packets of `packets` whose source was forged (it came in where that VM address is not routed) */
  drops: Array<{ src: string, dst: string, srcVm: string | null, dstVm: string | null, srcLink: string | null, packets: number, spoofed: number }>
}

/** a skip reason that says the link carries nothing (not this node's own: neither end here) */
const realSkip = (reason: string | undefined): string | undefined => reason === NEITHER_END_HERE ? undefined : reason

const nameOf = (members: MemberTable, id: string | null): string | null => id == null ? null : members.get(id)?.advert.name ?? null

export const lcmRoutes = (lcm: Lcm) => (app: FastifyInstance): void => {
  /**
   * Another node may have taken a link from the same output, or removed an end's VM, at
   * the same moment (each checked only its own copy of the document; both answered 201,
   * and one link was inert, or named a VM gone and held its output for good). Once such
   * a write had time to arrive, a link that lost (lostLink) is removed and its request
   * answered as a create after that write would have been. Alone on the grid there is
   * nobody to race with.
   */
  const settleLink = async (made: Link): Promise<void> => {
    if (![...lcm.members.values()].some(m => m.nodeId !== lcm.selfId && (m.state === 'alive' || m.state === 'suspect'))) return
    await new Promise(resolve => setTimeout(resolve, lcm.linkSettleMs ?? LINK_SETTLE_MS))
    const judge = (r: LcmReader): Error | null => lostLink(made, r.list('connections'), vmsOf(r))
    if (judge(lcm.state.read()) == null) return
    // judged again on what the write finds, and only then undone
    const lost = await lcm.state.write(w => {
      const e = judge(w.reader)
      if (e != null) w.remove('connections', made.id)
      return e
    }, `link create ${made.from.vm}.${made.from.terminal}: lost to a write of the same moment`)
    if (lost == null) return
    lcm.schedule(0)
    await lcm.settled()
    throw lost
  }

  // `?vm=NAME`: that VM's links only, whose counts alone are asked for (vm show)
  app.get<{ Querystring: { vm?: unknown } }>('/v1/links', { config: { query: ['vm'] } }, async (req): Promise<{ links: LinkView[] }> => {
    const vm = req.query.vm
    if (vm !== undefined && typeof vm !== 'string') throw new ValidationError('vm', 'query parameter vm: give one VM name')
    return { links: await views(lcm, links(lcm).filter(l => vm === undefined || l.from.vm === vm || l.to.vm === vm)) }
  })

  app.get<{ Params: { id: string } }>('/v1/links/:id', async (req): Promise<LinkView> => {
    const l = links(lcm).find(x => x.id === req.params.id)
    if (l == null) throw new NotFoundError(`no link ${quoteGiven(req.params.id)}`)
    return (await views(lcm, [l]))[0]!
  })

  app.post('/v1/links', { config: { access: 'admin' } }, async (req, reply): Promise<LinkView> => {
    const r = parseLinkRequest(req.body)
    // checked inside the write, on the document as the write finds it: two creates from
    // one output through this agent cannot both pass (the id is derived from the
    // request, so two agents racing on the same link write one object)
    const { link, made } = await lcm.state.write(w => {
      const l = checkLink(r, linkDoc(w.reader))
      // each end's VM as it is now: a VM made again under the name later is another one (formerVmLinks)
      const end = (e: Link['from']): Link['from'] => { const c = w.reader.get('vms', e.vm)?.value.created; return c == null ? e : { ...e, created: c } }
      const c = w.put('connections', { id: l.id, app: null, from: end(l.from), to: end(l.to), protocol: l.protocol, port: l.port })
      return { link: l, made: { ...l, from: c.from, to: c.to } }
    }, `link create ${r.from.vm}.${r.from.terminal}`)
    lcm.schedule(0)
    await settleLink(made)
    await lcm.settled()
    void reply.code(201)
    return (await views(lcm, [link]))[0]!
  })

  app.delete<{ Params: { id: string } }>('/v1/links/:id', { config: { access: 'admin' } }, async (req): Promise<{ removed: string, notApplied?: Array<{ node: string, name: string | null, state: string }> }> => {
    const before = links(lcm).find(x => x.id === req.params.id)
    const removed = await lcm.state.write(w => w.remove('connections', req.params.id))
    if (!removed) throw new NotFoundError(`no link ${quoteGiven(req.params.id)}`)
    lcm.schedule(0)
    await lcm.settled()
    // the nodes its ends run on take the removal into their rules; one whose agent is
    // not running (stopped for a restart, dead) keeps the rules it had, which go on
    // passing the link's traffic until it runs again (fail closed keeps rules): said
    // (bb27: "removed" while the traffic still passed)
    const place = new Map((lcm.last?.addr.vms ?? []).map(v => [v.vm, v.node]))
    const ends = before == null ? [] : [...new Set([place.get(before.from.vm), place.get(before.to.vm)])]
    const notApplied = ends.filter((n): n is string => n != null && n !== lcm.selfId && lcm.members.get(n)?.state !== 'alive')
      .map(n => ({ node: n, name: nameOf(lcm.members, n), state: lcm.members.get(n)?.state ?? 'unknown' }))
    return { removed: req.params.id, ...(notApplied.length > 0 ? { notApplied } : {}) }
  })

  app.get('/v1/net', async (): Promise<NetView> => {
    const peers = await lcm.peerStates()
    return {
      status: lcm.status(),
      peers: peers.map(p => ({
        node: p.node,
        name: nameOf(lcm.members, p.node),
        publicKey: p.publicKey,
        endpoint: p.endpoint,
        allowedIps: p.allowedIps,
        latestHandshake: p.latestHandshake === 0 ? null : new Date(p.latestHandshake).toISOString(),
        rxBytes: p.rxBytes,
        txBytes: p.txBytes
      })),
      rules: { table: lcm.table, flows: lcm.last?.rules.flows.length ?? 0, skipped: lcm.last?.rules.skipped ?? [] },
      drops: (await lcm.drops()).map(d => ({ src: d.src, dst: d.dst, srcVm: d.srcVm, dstVm: d.dstVm, srcLink: d.srcLink ?? null, packets: d.packets, spoofed: d.spoofed ?? 0 }))
    }
  })
}
