// Two agents, one with its clock an hour ahead (libfaketime): a write made after its
// writer saw another still wins on every agent, the fast clock does not drag the
// other's stamps an hour ahead, and the skew is reported.
import test from 'ava'
import { existsSync } from 'node:fs'
import { AgentGroup, freePort, waitFor } from '../helpers/agent-process.ts'
import { writeKeyFile, waitMembers, waitConverged, setLabel, metricValue, call } from '../state-grid.ts'
import { labelsOn } from './fault-helpers.ts'

const FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1'
const skip = existsSync(FAKETIME) ? null : `no libfaketime at ${FAKETIME} (Debian package faketime)`
if (skip != null) console.log(`skipping the clock-skew test: ${skip}`)
const maybe = skip == null ? test.serial : test.skip

maybe('an agent an hour ahead: causally later writes win everywhere, and the skew is reported', async t => {
  const group = new AgentGroup()
  t.teardown(async () => await group.cleanup())
  const keyFile = await writeKeyFile(group)
  const port = await freePort()
  const slow = await group.add({ name: 'right', p2pPort: port, args: ['--key', keyFile], env: { VGRID_TEST_HOOKS: '1' } })
  // only the wall clock is faked: timers run on the monotonic clock
  const fast = await group.add({
    name: 'fast',
    args: ['--key', keyFile, '--join', `/ip4/127.0.0.1/tcp/${port}`],
    env: { LD_PRELOAD: FAKETIME, FAKETIME: '+1h', FAKETIME_DONT_FAKE_MONOTONIC: '1', FAKETIME_NO_CACHE: '1', VGRID_TEST_HOOKS: '1' }
  })
  await waitMembers([slow, fast], 2)

  // the fast agent writes first; the correct one overwrites after seeing it
  t.is(await setLabel(fast, 'right', 'k', 'from-fast'), 200)
  await waitConverged([slow, fast], 30_000)
  t.is(await setLabel(slow, 'right', 'k', 'from-right-later'), 200)
  // and the other way round
  t.is(await setLabel(slow, 'right', 'k2', 'from-right'), 200)
  await waitConverged([slow, fast], 30_000)
  t.is(await setLabel(fast, 'right', 'k2', 'from-fast-later'), 200)
  await waitConverged([slow, fast], 30_000)
  for (const a of [slow, fast]) {
    const labels = await labelsOn(a, 'right')
    t.is(labels.k, 'from-right-later', `${a.opts.name}: the causally later write wins`)
    t.is(labels.k2, 'from-fast-later', `${a.opts.name}: the causally later write wins`)
  }
  // concurrent writes (state sync cut between them): the fast one first, the correct
  // one a second later in real time; the correct one's write wins once they meet
  const idOf = async (a: typeof slow): Promise<string> => ((await call(a, 'GET', '/v1/status')).body as { node: { id: string } }).node.id
  const [slowId, fastId] = [await idOf(slow), await idOf(fast)]
  t.is((await call(slow, 'PUT', '/v1/state/test/blocked-peers', { peers: [fastId] })).status, 200)
  t.is((await call(fast, 'PUT', '/v1/state/test/blocked-peers', { peers: [slowId] })).status, 200)
  t.is(await setLabel(fast, 'right', 'k3', 'fast-concurrent'), 200)
  await new Promise(resolve => setTimeout(resolve, 1000))
  t.is(await setLabel(slow, 'right', 'k3', 'right-concurrent-later'), 200)
  for (const a of [slow, fast]) t.is((await call(a, 'PUT', '/v1/state/test/blocked-peers', { peers: [] })).status, 200)
  await waitFor(async () => {
    const all = await Promise.all([slow, fast].map(async a => (await labelsOn(a, 'right')).k3))
    return all.every(v => v === 'right-concurrent-later')
  }, 30_000, 'the write the correct clock had passed wins on both agents')
  t.regex(slow.log, /values stamped in the future .* settled/)

  // the correct agent saw stamps an hour ahead and did not follow them (crdt/hlc.ts bound)
  t.true(metricValue(await slow.metrics(), 'vgrid_state_future_stamps') >= 1, 'the future stamps are counted')

  // the skew is reported: metrics on both sides (needs the heartbeats wired to the registry)
  await waitFor(async () => metricValue(await slow.metrics(), 'vgrid_clock_offset_peers_over_bound') === 1, 15_000, 'the correct agent reports a peer over the clock bound')
  t.is(metricValue(await fast.metrics(), 'vgrid_clock_offset_peers_over_bound'), 1)
})
