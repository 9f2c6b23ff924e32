// A whole grid stopped gracefully and started again, with mDNS off and no --join:
// each agent has only its peer book, where the others are marked as left. In every
// start order the grid forms again. One grid for the six orders, one test per order.
import test from 'ava'
import { setTimeout as sleep } from 'node:timers/promises'
import { AgentGroup, freePort, type AgentProcess } from '../helpers/agent-process.ts'
import { writeKeyFile, waitMembers } from '../state-grid.ts'

const ORDERS = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]
const group = new AgentGroup()
const agents: AgentProcess[] = []

test.before(async () => {
  const keyFile = await writeKeyFile(group)
  // one after the other (a loaded machine starts three agents at once slowly)
  const port = await freePort()
  for (let i = 0; i < 3; i++) agents.push(await group.add({ name: `r${i}`, p2pPort: i === 0 ? port : undefined, args: ['--key', keyFile, ...(i === 0 ? [] : ['--join', `/ip4/127.0.0.1/tcp/${port}`])] }))
  await waitMembers(agents, 3, 45_000)
  // from now on only the peer book says where the others are
  for (const a of agents) a.opts.args = ['--key', keyFile]
})

test.after.always(async () => { await group.cleanup() })

for (const [round, order] of ORDERS.entries()) {
  test.serial(`stopped gracefully, started in the order ${order.join(',')}: the grid forms again`, async t => {
    // stopped one after the other, half a second apart: the later ones see the earlier ones leave
    const stops = [round % 3, (round + 1) % 3, (round + 2) % 3]
    const codes = await Promise.all(stops.map(async (i, k) => { await sleep(k * 500); return await agents[i]!.kill('SIGTERM') }))
    t.deepEqual(codes, [0, 0, 0], 'every agent stops cleanly')
    // started in this order, each once the one before answers
    const t0 = Date.now()
    for (const i of order) await agents[i]!.start()
    await waitMembers(agents, 3, 45_000).catch((err: Error) => { throw new Error(`start order ${order.join(',')}: ${err.message}\n${group.logs()}`) })
    t.log(`formed again ${Date.now() - t0} ms after the first start`)
  })
}
