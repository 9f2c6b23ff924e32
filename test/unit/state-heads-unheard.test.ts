// A volume store frees and folds nothing while a member's changes are unknown here
// (node/gvs/service.ts mayFree): a member not heard announcing heads since this agent
// started counts as unknown, not as holding nothing new (rv31).
import test from 'ava'
import { startDvmmGrid, until } from '../dvmm/grid.ts'

test('a member is unheard until its heads come (advert or gossip); a peer never heard stays so', async t => {
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=2,mem=2G,disk=10G' })
  t.teardown(g.stop)
  const [a, b] = g.nodes.map(n => n.agent)
  await until(() => a!.state.headsUnheardOf([b!.id]).length === 0, 20_000, 'the other member\'s heads')
  t.deepEqual(b!.state.headsUnheardOf([a!.id]), [])
  const stranger = '12D3KooWNeverHeardOfThisPeerAtAll11111111111111'
  t.deepEqual(a!.state.headsUnheardOf([b!.id, stranger]), [stranger])
})
