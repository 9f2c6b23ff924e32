// The harness's own promises, checked on real agents: an agent can be killed,
// stopped and restarted, a host can be added to a running grid, and stopping the
// grid leaves no namespace and no process behind.
import { e2e, Grid, secs } from '../harness/index.ts'
import { isAlive, listNamespaces } from '../../node/netns/netns.ts'

const BOUND_MS = 20_000

e2e('harness: kill, stop, restart and add hosts; nothing is left afterwards', async t => {
  const grid = await Grid.start(t, { hosts: 2 })
  await grid.waitAllAlive(BOUND_MS)

  await grid.host('h2').kill()
  const dead = await grid.waitState(['h1'], 'h2', 'dead', BOUND_MS)
  t.log(`killed h2: dead on h1 after ${secs(dead)}`)
  await grid.host('h2').start()
  t.log(`restarted h2: all alive after ${secs(await grid.waitAllAlive(BOUND_MS))}`)

  // a graceful stop says goodbye: the other side marks it "left", not dead (and, its
  // leave having taken it off the roll, lists it no more)
  await grid.host('h1').stop()
  await grid.waitViews(['h2'], v => [undefined, 'left'].includes(v.h2!.h1), BOUND_MS, 'h1 left on h2')
  await grid.host('h1').restart()
  await grid.waitAllAlive(BOUND_MS)

  await grid.addHost('h3')
  t.log(`added h3 later: all 3 alive after ${secs(await grid.waitAllAlive(BOUND_MS))}`)
  t.is((await grid.host('h3').status()).members.alive, 3)

  const namespaces = grid.list.map(h => h.ns).concat(grid.topo.switchNs)
  const pids = grid.list.flatMap(h => [h.agent.pid, h.bridge.pid]).filter((p): p is number => p != null)
  await grid.stop()
  const left = (await listNamespaces()).filter(ns => namespaces.includes(ns))
  t.deepEqual(left, [], 'every namespace of the grid is gone')
  t.deepEqual(pids.filter(isAlive), [], 'every agent and bridge process is gone')
})
