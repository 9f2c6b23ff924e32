// A server that moves to another address keeps its place in the grid: its agent
// sees its listen addresses change and re-advertises, the others reach it at the
// new address, and it is alive on all of them again within a bound.
import { e2e, Grid, secs } from '../harness/index.ts'

/**
 * The moved host sees its address vanish (checked every second), closes its
 * connections (bound to the old address, so dead) and redials; member sync on the
 * new connections hands the others its new advert (1 to 2 s here). Should that
 * fail, each side declares the other dead within about 4.5 s and drops the stale
 * connections, which takes about 8 s in all. 15 s leaves room for a busy machine.
 */
const BOUND_MS = 15_000

e2e('a host whose address changes is alive again on all others within a bound', async t => {
  const grid = await Grid.start(t, { hosts: 3 })
  await grid.waitAllAlive(BOUND_MS)

  const old = grid.host('h2').address
  const movedAt = Date.now()
  const now = await grid.changeAddress('h2')
  t.not(now, old)

  // alive on the others *with the new address in its advert*: an "alive" from
  // before the move must not count
  const addrOf = async (observer: string): Promise<string[]> =>
    (await grid.host(observer).nodes()).find(n => n.name === 'h2')?.addrs ?? []
  const start = Date.now()
  let last: Record<string, string[]> = {}
  for (;;) {
    const views = await grid.views()
    last = { h1: await addrOf('h1'), h3: await addrOf('h3') }
    const seesNew = ['h1', 'h3'].every(o => last[o]!.some(a => a.includes(`/ip4/${now}/`)) && !last[o]!.some(a => a.includes(`/ip4/${old}/`)))
    const allAlive = Object.values(views).every(v => typeof v !== 'string' && ['h1', 'h2', 'h3'].every(n => v[n] === 'alive'))
    if (seesNew && allAlive) break
    if (Date.now() - start > BOUND_MS) {
      t.fail(`after ${BOUND_MS} ms: all alive on each other: ${allAlive ? 'yes' : 'no'}; ` +
        `h1 and h3 know h2's new address ${now}: ${seesNew ? 'yes' : 'no (they still hold the advert from before the move)'}\n` +
        `views ${JSON.stringify(views)}\nh2's addresses as h1 and h3 have them: ${JSON.stringify(last)}`)
      return
    }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  const ms = Date.now() - movedAt
  t.log(`h2 moved ${old} -> ${now}: alive with its new address on h1 and h3, and they on it, after ${secs(ms)} (bound ${secs(BOUND_MS)})`)
  t.true(ms <= BOUND_MS)

  // and it stays that way: the others really talk to it at the new address
  await new Promise(resolve => setTimeout(resolve, 5000))
  const views = await grid.views()
  for (const o of ['h1', 'h2', 'h3']) t.deepEqual(views[o], { h1: 'alive', h2: 'alive', h3: 'alive' }, `${o}: still all alive 5 s later`)
})
