// Joining by mDNS alone, and keeping strangers out: three hosts with one cluster
// key find each other with no --join; a fourth with another key, on the same LAN
// and so discovered by mDNS too, never becomes a member, and both sides count its
// connections as rejected for the wrong key.
import { e2e, Grid, secs } from '../harness/index.ts'

const BOUND_MS = 20_000

e2e('3 hosts with the same key join by mDNS alone; a 4th with another key stays out', async t => {
  const grid = await Grid.start(t, {
    hosts: ['h1', 'h2', 'h3', { name: 'stranger', key: 'other' }]
  })
  const members = ['h1', 'h2', 'h3']
  const joined = await grid.waitAllAlive(BOUND_MS, members)
  t.log(`h1-h3 all alive on each other ${secs(joined)} after their agents were up`)

  // the stranger is discovered by mDNS and dialled: wait until both sides have
  // refused it for the key, then give gossip time it would need to leak it in
  const rejected = async (name: string): Promise<number> =>
    await grid.host(name).metric('vgrid_connections_rejected_total', { reason: 'bad-key' })
  const start = Date.now()
  for (;;) {
    const counts = await Promise.all(['stranger', ...members].map(rejected))
    const [own, ...others] = counts
    if (own! > 0 && others.reduce((a, b) => a + b, 0) > 0) {
      t.log(`bad-key rejections: stranger ${own}, ${members.map((m, i) => `${m} ${others[i]}`).join(', ')}`)
      break
    }
    if (Date.now() - start > BOUND_MS) {
      t.fail(`no bad-key rejections on both sides after ${BOUND_MS} ms (stranger, h1, h2, h3): ${counts.join(', ')}`)
      return
    }
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  await new Promise(resolve => setTimeout(resolve, 3000))

  const views = await grid.views()
  for (const m of members) {
    t.deepEqual(views[m], { h1: 'alive', h2: 'alive', h3: 'alive' }, `${m} sees exactly the three members`)
  }
  t.deepEqual(views.stranger, { stranger: 'alive' }, 'the stranger sees only itself')
  const status = await grid.host('h1').status()
  t.is(status.members.alive, 3)
  // the stranger never got as far as gossip: no advert of another cluster reached a member
  for (const m of members) {
    for (const reason of ['wrong-cluster', 'forged']) {
      t.is(await grid.host(m).metric('vgrid_gossip_rejected_total', { reason }), 0, `${m}: no ${reason} gossip`)
    }
  }
})
