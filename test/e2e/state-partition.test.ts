// The cluster document across a real network partition: 5 hosts split 2 + 3 by
// firewall rules, both sides write the same label and different ones, then the
// network heals and every host converges to the same document, the contested label
// resolving by the documented rule (latest write wins).
import { e2e, Grid, secs } from '../harness/index.ts'

const BOUND_MS = 30_000
const sideA = ['h1', 'h2']
const sideB = ['h3', 'h4', 'h5']

e2e('a 2 + 3 network partition: both sides write, and after healing all converge by latest write', async t => {
  const grid = await Grid.start(t, { hosts: 5 })
  await grid.waitAllAlive(BOUND_MS)
  const host = (name: string) => grid.list.find(h => h.name === name)!
  const label = async (on: string, node: string, key: string, value: string): Promise<void> => {
    await host(on).api(`/v1/nodes/${node}/labels/${key}`, 'PUT', { value })
  }
  const labelsOf = async (on: string, node: string): Promise<Record<string, string>> =>
    (await host(on).nodes()).find(n => n.name === node)?.labels ?? {}

  for (const a of sideA) await grid.cut(a, { from: sideB })
  await grid.waitViews([...sideA, ...sideB], v =>
    sideA.every(a => sideB.every(b => v[a]![b] === 'dead' && v[b]![a] === 'dead')), BOUND_MS, 'each side sees the other dead')

  await label('h1', 'h1', 'zone', 'a-first')
  await label('h2', 'h2', 'only-a', '1')
  await new Promise(resolve => setTimeout(resolve, 50))
  await label('h4', 'h1', 'zone', 'b-later')
  await label('h5', 'h5', 'only-b', '1')
  // nothing crosses the cut
  await new Promise(resolve => setTimeout(resolve, 1500))
  t.is((await labelsOf('h2', 'h1')).zone, 'a-first')
  t.is((await labelsOf('h3', 'h1')).zone, 'b-later')
  t.is((await labelsOf('h3', 'h2'))['only-a'], undefined)

  const healedAt = Date.now()
  for (const a of sideA) await grid.heal(a)
  const converged = async (): Promise<boolean> => {
    const heads = new Set<string>()
    for (const h of grid.list) {
      const l1 = await labelsOf(h.name, 'h1')
      if (l1.zone !== 'b-later') return false
      if ((await labelsOf(h.name, 'h2'))['only-a'] !== '1' || (await labelsOf(h.name, 'h5'))['only-b'] !== '1') return false
      heads.add(JSON.stringify((await h.api<{ heads: string[] }>('/v1/state')).heads.slice().sort()))
    }
    return heads.size === 1
  }
  const start = Date.now()
  for (;;) {
    if (await converged().catch(() => false)) break
    if (Date.now() - start > BOUND_MS) throw new Error(`not converged within ${secs(BOUND_MS)} of healing`)
    await new Promise(resolve => setTimeout(resolve, 250))
  }
  t.log(`healed: all 5 hosts have identical heads and zone=b-later (the later write) after ${secs(Date.now() - healedAt)}`)
  t.pass()
})
