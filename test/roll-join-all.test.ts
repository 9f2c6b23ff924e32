// Every server started with the same --join (the first one's address, the first one
// included): a tester's grid kept an empty member roll for ever, since a node told to
// join wrote its entry only once its document held another node's, and none did. With
// no roll, a node alone counted itself a majority and never fenced (invariant 3), and
// a stop for a restart got no grace. Now a node told to join writes its entry once it
// reached a join address and holds a live member's document: the roll fills.
import test from 'ava'
import { AgentGroup, freePort, waitFor } from './helpers/agent-process.ts'
import { writeKeyFile } from './state-grid.ts'
import { mayChangeRoll } from '../crdt/placement/index.ts'

const group = new AgentGroup()
test.after.always(async () => { await group.cleanup() })

test('mayChangeRoll: told to join, an empty roll is written once synced with a live member', t => {
  t.false(mayChangeRoll({ roll: [], me: 'N', alive: () => true, joining: true }).ok)
  t.false(mayChangeRoll({ roll: [], me: 'N', alive: () => true, joining: true, synced: false }).ok)
  t.true(mayChangeRoll({ roll: [], me: 'N', alive: () => true, joining: true, synced: true }).ok)
  // synced or not, the majority rule holds over what the roll has
  t.false(mayChangeRoll({ roll: ['A', 'B'], me: 'N', alive: () => false, joining: true, synced: true }).ok)
})

test('three agents all told to join the first (itself included): each writes its roll entry', async t => {
  const keyFile = await writeKeyFile(group)
  const port = await freePort()
  const join = ['--join', `/ip4/127.0.0.1/tcp/${port}`]
  const caps = ['--capacity', 'cpu=2,mem=2G,disk=10G', '--key', keyFile]
  const a = await group.add({ name: 'ja', p2pPort: port, args: [...caps, ...join] })
  await group.add({ name: 'jb', args: [...caps, ...join] })
  await group.add({ name: 'jc', args: [...caps, ...join] })
  await waitFor(async () => (await a.get<{ counts: Record<string, number> }>('/v1/state')).counts.roll === 3, 45_000, 'three on the roll')
  t.pass()
})
