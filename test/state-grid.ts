// Shared by the state-*.test.ts files: a grid of real agent processes on loopback
// that share a cluster key, plus the state API calls the tests make. Everything is
// torn down (by PID) and removed through t.teardown, also when a test fails.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ExecutionContext } from 'ava'
import { AgentGroup, freePort, tempDir, waitFor, type AgentProcess } from './helpers/agent-process.ts'
import { formatClusterKey, generateClusterKey } from '../protocol/cluster-key.ts'
import type { StateView } from '../node/state/index.ts'
import type { NodeView } from '../node/api/types.ts'

export interface Grid {
  group: AgentGroup
  agents: AgentProcess[]
  ids: string[]
  keyFile: string
}

export async function writeKeyFile (group: AgentGroup): Promise<string> {
  const dir = await tempDir('vgrid-key-')
  group.dirs.push(dir)
  const file = join(dir, 'cluster.key')
  await writeFile(file, formatClusterKey(generateClusterKey()), { mode: 0o600 })
  return file
}

/** Starts `n` agents at once (all joining the first) and waits until each sees all alive. */
export async function startGrid (t: ExecutionContext, n: number, opts: { env?: Record<string, string>, prefix?: string, args?: (i: number) => string[] } = {}): Promise<Grid> {
  const group = new AgentGroup()
  t.teardown(async () => await group.cleanup())
  const keyFile = await writeKeyFile(group)
  const ports = await Promise.all(Array.from({ length: n }, async () => await freePort()))
  const first = `/ip4/127.0.0.1/tcp/${ports[0]}`
  const agents = await Promise.all(ports.map(async (p2pPort, i) => await group.add({
    name: `${opts.prefix ?? 'n'}${i}`,
    p2pPort,
    args: ['--key', keyFile, ...(i === 0 ? [] : ['--join', first]), ...(opts.args?.(i) ?? [])],
    env: opts.env
  })))
  await waitFor(async () => {
    const all = await Promise.all(agents.map(async a => (await call(a, 'GET', '/v1/status', undefined, 10_000)).body as { members: { alive: number } }))
    return all.every(s => s.members.alive === n)
  }, 30_000, `${n} agents see each other`, () => agents.some(a => !a.running) ? group.logs() : undefined)
  // each agent writes itself into the member roll once it sees the others: wait for those
  // writes, so a test that compares the document before and after sees only its own changes
  await waitFor(async () => (await Promise.all(agents.map(stateOf))).every(s => s.counts.roll === n), 30_000, `${n} agents on the member roll`)
  await waitConverged(agents, 30_000, 'the member roll converges')
  const ids = await Promise.all(agents.map(async a => ((await call(a, 'GET', '/v1/status')).body as { node: { id: string } }).node.id))
  return { group, agents, ids, keyFile }
}

export const stateOf = async (a: AgentProcess): Promise<StateView> => (await call(a, 'GET', '/v1/state', undefined, 20_000)).body as StateView

export async function nodesOf (a: AgentProcess): Promise<Map<string, NodeView>> {
  const r = (await call(a, 'GET', '/v1/nodes', undefined, 20_000)).body as { nodes: NodeView[] }
  return new Map(r.nodes.map(n => [n.name, n]))
}

/** An API call with a timeout fit for a loaded test machine (the helper's is 5 s). */
export async function call (a: AgentProcess, method: string, path: string, body?: unknown, ms = 60_000): Promise<{ status: number, body: unknown }> {
  const res = await fetch(`http://${a.api}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(ms)
  })
  const text = await res.text()
  let parsed: unknown = text
  try { parsed = JSON.parse(text) } catch {}
  return { status: res.status, body: parsed }
}

export async function setLabel (a: AgentProcess, node: string, key: string, value: string): Promise<number> {
  return (await call(a, 'PUT', `/v1/nodes/${encodeURIComponent(node)}/labels/${encodeURIComponent(key)}`, { value })).status
}

/** Waits until every agent sees `n` members alive. */
export async function waitMembers (agents: AgentProcess[], n: number, ms = 30_000): Promise<void> {
  await waitFor(async () => {
    const all = await Promise.all(agents.map(async a => (await call(a, 'GET', '/v1/status', undefined, 10_000)).body as { members: { alive: number } }))
    return all.every(s => s.members.alive === n)
  }, ms, `${n} agents see each other`)
}

/** Waits until every agent has the same heads and the same content digest. */
export async function waitConverged (agents: AgentProcess[], ms: number, what = 'agents converge'): Promise<StateView[]> {
  let last: StateView[] = []
  await waitFor(async () => {
    last = await Promise.all(agents.map(stateOf))
    const key = (s: StateView): string => [...s.heads].sort().join() + '|' + s.digest
    return last.every(s => key(s) === key(last[0]!))
  }, ms, what).catch(err => {
    // what each agent had at the last look: enough to tell a stalled session from a slow one
    const seen = last.map((s, i) => `${agents[i]?.opts.name ?? i}: ${s.heads.length} heads ${[...s.heads].sort().map(h => h.slice(0, 8)).join(',')} digest ${s.digest.slice(0, 8)} ` +
      `changes ${s.history.changes} sessions [${s.peers.filter(p => p.session).map(p => p.name ?? p.id.slice(-6)).join(' ')}] blocked ${s.blocked.length}`)
    throw new Error(`${(err as Error).message}\n${seen.join('\n')}`)
  })
  return last
}

export function metricValue (text: string, name: string, labels = ''): number {
  const line = text.split('\n').find(l => l.startsWith(name + (labels === '' ? ' ' : `{${labels}} `)))
  return line == null ? 0 : Number(line.split(' ').at(-1))
}
