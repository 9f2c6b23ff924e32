// A damaged state file (a snapshot with flipped bytes; a log cut short) is detected
// at start with a clear log line, kept aside as <file>.corrupt-<time>, and the
// agent gets the document back from its peers.
import test from 'ava'
import { readdir, readFile, writeFile, truncate, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { waitFor } from './helpers/agent-process.ts'
import { startGrid, setLabel, waitConverged, nodesOf, stateOf, metricValue } from './state-grid.ts'

test('a corrupt snapshot and a truncated log are set aside and the state comes back from peers', async t => {
  const { agents, ids } = await startGrid(t, 3)
  const [n0, n1, n2] = agents as [typeof agents[0], typeof agents[0], typeof agents[0]]
  for (let i = 0; i < 20; i++) t.is(await setLabel(n0, 'n1', `k${i}`, `v${i}`), 200)
  await waitConverged(agents, 20_000)

  // 1. flip bytes in the middle of n2's snapshot (a graceful stop writes one)
  await n2.kill('SIGTERM')
  const dir2 = join(n2.opts.dataDir, 'state')
  const snap = await readFile(join(dir2, 'snapshot'))
  t.true(snap.length > 100)
  for (let i = 40; i < 60; i++) snap[i] = snap[i]! ^ 0xa5
  await writeFile(join(dir2, 'snapshot'), snap)
  await n2.start()
  t.regex(n2.log, /state snapshot \S+ is damaged: checksum mismatch; kept aside as \S+snapshot\.corrupt-\S+; recovering the document from peers/)
  t.true((await readdir(dir2)).some(f => f.startsWith('snapshot.corrupt-')))
  await waitConverged(agents, 20_000, 'n2 recovers from peers')
  t.is((await nodesOf(n2)).get('n1')?.labels.k19, 'v19')
  const s2 = await stateOf(n2)
  t.is(s2.persistence.recovered.length, 1)
  t.is(s2.persistence.recovered[0]?.file, 'snapshot')
  t.is(metricValue(await n2.metrics(), 'vgrid_state_corrupt_files_total'), 1)

  // 2. cut n1's log short after more writes have been appended to it
  for (let i = 20; i < 30; i++) t.is(await setLabel(n0, 'n1', `k${i}`, `v${i}`), 200)
  await waitConverged(agents, 20_000)
  await n1.kill('SIGKILL')
  const log1 = join(n1.opts.dataDir, 'state', 'log')
  const size = (await stat(log1)).size
  t.true(size > 50, 'the log holds records')
  await truncate(log1, size - 7)
  await n1.start()
  t.regex(n1.log, /state log \S+ is damaged: record at byte \d+ is truncated .*; kept aside as \S+log\.corrupt-\S+; recovering the document from peers/)
  await waitConverged(agents, 20_000, 'n1 recovers from peers')
  t.is((await nodesOf(n1)).get('n1')?.labels.k29, 'v29')
  // both survivors keep working (by peer id: n1 may not have heard n2's advert yet)
  t.is(await setLabel(n1, ids[2]!, 'after', 'yes'), 200)
  await waitFor(async () => (await nodesOf(n2)).get('n2')?.labels.after === 'yes', 10_000, 'a write after recovery spreads')
})
