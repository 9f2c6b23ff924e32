// The volume store's background pass: every period, soon after a membership change, and
// sooner after a pass that left copies unmade (a node back whose volume store was not
// serving yet left volumes `degraded` for the 30 s to the next pass: a tester).
import test from 'ava'
import { BackgroundPass } from '../../node/gvs/background-pass.ts'

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

test('a pass that left copies unmade is followed after retryMs, doubling while they stay unmade, up to the period; one that made them all waits the period', async t => {
  const at: number[] = []
  const unmade = [true, true, true, false, false]
  const t0 = Date.now()
  const pass = new BackgroundPass({ periodMs: 1000, delayMs: 0, retryMs: 60, run: async () => { at.push(Date.now() - t0); return unmade[at.length - 1] }, failed: () => {} })
  pass.start()
  t.teardown(async () => { await pass.stop() })
  while (at.length < 5 && Date.now() - t0 < 5000) await sleep(10)
  await pass.stop()
  const gaps = at.slice(1).map((x, i) => x - at[i]!)
  t.log(`gaps ${gaps.join(', ')} ms`)
  // lower bounds only (a loaded machine runs timers late, never much early)
  t.true(gaps[0]! >= 55 && gaps[0]! < 995, `first retry after retryMs, before the period (${gaps[0]})`)
  t.true(gaps[1]! >= 115, `then doubled (${gaps[1]})`)
  t.true(gaps[2]! >= 235, `then doubled again (${gaps[2]})`)
  t.true(gaps[3]! >= 995, `a pass that made every copy waits the period (${gaps[3]})`)
})

test('without retryMs a failing pass waits the period, as before', async t => {
  const at: number[] = []
  const t0 = Date.now()
  const pass = new BackgroundPass({ periodMs: 200, delayMs: 0, run: async () => { at.push(Date.now() - t0); return true }, failed: () => {} })
  pass.start()
  while (at.length < 2 && Date.now() - t0 < 3000) await sleep(10)
  await pass.stop()
  t.true(at[1]! - at[0]! >= 195)
})
