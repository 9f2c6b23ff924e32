// API routes of membership: GET /v1/status, /v1/nodes, /v1/nodes/:id, and the join
// token (GET /v1/token: admin only, it carries the cluster key).
import type { FastifyInstance } from 'fastify'
import { NotFoundError, quoteGiven } from '../errors.ts'
import type { Member, MemberTable } from '../../protocol/membership.ts'
import type { HealthProblem, NodesView, NodeView, StatusView, TokenView, UnseenMemberView } from '../api/types.ts'
import type { MemberDirectory } from './directory.ts'
import type { Compat } from '../../protocol/compat.ts'
import type { ClockOffset } from '../../protocol/heartbeat.ts'
import type { OutOfReach } from '../../protocol/reach-watch.ts'
import { gone, nodeView, statusView, unseenMembers, type SelfInfo } from './views.ts'

export interface MembershipRoutesDeps {
  self: () => SelfInfo
  directory: MemberDirectory
  labels: { labelsOf: (node: string) => Record<string, string> }
  /** a node's roll entry: draining, stopped for a restart; none: neither */
  roll?: (node: string) => { draining?: boolean, restart?: { fenceMs: number, since: number } | null } | undefined
  /** whether a node is gone from the roll (vgrid node forget): once dead it is not shown nor counted */
  forgotten?: (node: string) => boolean
  /** the grid's member roll (cluster document): members on it this agent never heard from are listed as `unseen` */
  rollEntries?: () => ReadonlyArray<{ node: string, name: string, joined: number }>
  /** whether a member speaks a protocol version this agent speaks */
  compat: (node: string) => Compat | undefined
  /** a member this node does not reach while another does (a partial partition) */
  outOfReach?: (node: string) => OutOfReach | undefined
  /** a neighbour's measured clock offset (only neighbours are measured) */
  clock: (node: string) => ClockOffset | undefined
  /** whether a member is known alive within the liveness window here (MembershipService.inSight) */
  inSight?: (node: string) => boolean
  health: () => Promise<HealthProblem[]>
  /** the VM manager's HA check, when it runs */
  ha?: () => StatusView['ha']
  token: () => string
}

/** Every member, sorted by name, and one by id or name (NotFoundError if none). */
export function nodeViews (d: MembershipRoutesDeps): { all: () => NodeView[], one: (idOrName: string) => NodeView, unseen: () => UnseenMemberView[] } {
  const view = (m: Member): NodeView => ({
    ...nodeView(m, d.self().id, d.labels.labelsOf(m.nodeId), d.compat(m.nodeId), d.clock(m.nodeId), d.roll?.(m.nodeId), undefined, d.outOfReach?.(m.nodeId), id => d.directory.members.get(id)?.advert.name ?? id),
    // only for a member that keeps a liveness table (the others have no say in it)
    inSight: d.inSight == null || m.nodeId === d.self().id || m.advert.livenessMs == null ? null : d.inSight(m.nodeId)
  })
  const unseen = (): UnseenMemberView[] => unseenMembers(d.rollEntries?.() ?? [], d.directory.members)
  return {
    all: () => [...shown(d).values()].map(view).sort((a, b) => a.name.localeCompare(b.name)),
    one: (idOrName) => {
      const m = d.directory.find(idOrName, id => d.roll?.(id) != null)
      if (m != null) return view(m)
      const u = unseen().find(x => x.id === idOrName || x.name === idOrName)
      if (u != null) throw new NotFoundError(`${u.name} (${u.id}) is a member of the grid (on its roll since ${u.joined}) that this agent has not heard from since it started: it counts as down; bring it back, or \`vgrid node forget ${u.name}\` if it is gone for good`)
      throw new NotFoundError(`no node with id or name ${quoteGiven(idOrName, 128)}`)
    },
    unseen
  }
}

/**
 * The members shown and counted: all but those down (dead, or left) that the roll no
 * longer holds (forgotten with `vgrid node forget`, or gone by a leave: the gossip table
 * keeps them until its forget time, and they were listed and counted meanwhile; bb36: a
 * reinstalled server's old identity, stopped gracefully, stood beside the new one for
 * minutes)
 */
function shown (d: MembershipRoutesDeps): MemberTable {
  const all = d.directory.members
  if (d.forgotten == null) return all
  return new Map([...all].filter(([id, m]) => !(gone(m.state) && d.forgotten!(id))))
}

export const membershipRoutes = (d: MembershipRoutesDeps) => (app: FastifyInstance): void => {
  const views = nodeViews(d)
  app.get('/v1/status', async (): Promise<StatusView> => statusView(d.self(), shown(d), await d.health(), d.ha?.() ?? null, views.unseen().length, id => d.roll?.(id)?.draining === true))
  app.get('/v1/nodes', async (): Promise<NodesView> => ({ nodes: views.all(), unseen: views.unseen() }))
  app.get<{ Params: { id: string } }>('/v1/nodes/:id', {
    schema: { params: { type: 'object', properties: { id: { type: 'string', minLength: 1, maxLength: 128 } }, required: ['id'] } }
  }, async (req): Promise<NodeView> => views.one(req.params.id))
  app.get('/v1/token', { config: { access: 'admin' } }, async (): Promise<TokenView> => ({ token: d.token() }))
}
