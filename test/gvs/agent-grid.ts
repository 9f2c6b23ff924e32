// Three in-process agents with their own documents, state sync and gossip (the memory
// transport), their volume APIs, and one volume every agent has seen: for tests that cut
// the document's replication between agents (the state service's blocked peers) while
// membership, gossip and the replica streams stay up.
import type { ExecutionContext } from 'ava'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { GvsService } from '../../node/gvs/service.ts'
import type { Agent } from '../../node/agent.ts'
import { startDvmmGrid, until } from '../dvmm/grid.ts'
import { apiOf } from './hosts.ts'
import { OBJECT_SIZE } from '../../node/gvs/placement.ts'

export const gvsOf = (a: Agent): GvsService => (a as unknown as { services: Array<{ name: string }> }).services.find(s => s.name === 'gvs') as GvsService
export const socketOf = (a: Agent): string => join(a.config.dataDir, 'nbd.sock')

export async function threeAgentsWithVolume (t: ExecutionContext, path: string, objects: number): Promise<{ agents: [Agent, Agent, Agent], ids: string[], api: FastifyInstance[], id: string }> {
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=100G' })
  t.teardown(g.stop)
  const agents = g.nodes.map(n => n.agent) as [Agent, Agent, Agent]
  const api = agents.map(a => apiOf(gvsOf(a)))
  t.teardown(async () => { for (const x of api) await x.close() })
  const created = await api[0]!.inject({ method: 'POST', url: '/v1/volumes', payload: { path, size: objects * OBJECT_SIZE } })
  t.is(created.statusCode, 201, created.body)
  const id = created.json<{ id: string }>().id
  await until(() => agents.every(a => a.state.read().get('volumes', id) != null), 20_000, 'the volume on every agent')
  return { agents, ids: agents.map(a => a.id), api, id }
}
