// Durability: an agent killed with SIGKILL while writes are in flight has, after a
// restart, every change it acknowledged (the API answers only after fsync). The agent
// runs alone, so nothing can come back from peers and mask a loss.
import test from 'ava'
import { AgentGroup, waitFor } from './helpers/agent-process.ts'
import { writeKeyFile, setLabel, call } from './state-grid.ts'

test('SIGKILL during a stream of writes loses nothing that was acknowledged', async t => {
  const group = new AgentGroup()
  t.teardown(async () => await group.cleanup())
  const keyFile = await writeKeyFile(group)
  const a = await group.add({ name: 'solo', args: ['--key', keyFile] })
  const acked = new Map<string, string>()
  let round = 0

  for (const killAfter of [60, 150]) {
    round++
    let stop = false
    let next = 0
    // 16 writers in parallel until the kill; each records what was acknowledged
    const writer = async (): Promise<void> => {
      while (!stop) {
        const key = `r${round}-k${next++}`
        const value = `v${round}.${next}`
        try {
          if (await setLabel(a, 'solo', key, value) === 200) acked.set(key, value)
        } catch {
          return // the agent died under us
        }
      }
    }
    const writers = Array.from({ length: 16 }, writer)
    const before = acked.size
    await waitFor(() => acked.size >= before + killAfter, 60_000, `${killAfter} acknowledged writes`, () => a.running ? undefined : `agent died:\n${a.log}`)
    t.is(await a.kill('SIGKILL'), null, 'killed by signal')
    stop = true
    await Promise.all(writers)
    t.log(`round ${round}: ${acked.size - before} acknowledged before the kill, ${next} attempted`)

    await a.start()
    const labels = ((await call(a, 'GET', '/v1/nodes/solo')).body as { labels: Record<string, string> }).labels
    const missing = [...acked].filter(([k, v]) => labels[k] !== v).map(([k]) => k)
    t.deepEqual(missing, [], 'every acknowledged write survived the kill')
  }
  // a torn last record (a write cut by the kill) is reported and set aside, never fatal
  if (/is damaged/.test(a.log)) t.log('a write was cut by the kill: the log tail was set aside, as designed')
})
