// An append to the state log waits for the event loop as few times as it can: every
// step of a write resumes only when the loop comes round, and an agent whose loop is
// busy (a burst of sync messages) takes up to a second per turn. Counted here against
// a loop kept busy on purpose: each turn runs one 50 ms task.
import test from 'ava'
import { rm } from 'node:fs/promises'
import { StateStore } from '../node/state/store.ts'
import { tempDir } from './helpers/agent-process.ts'

/** Runs `fn` while every turn of the event loop is kept busy; returns how many turns it took. */
async function turnsOf (fn: () => Promise<void>, busyMs = 50): Promise<number> {
  let turns = 0
  let done = false
  const spin = (): void => {
    if (done) return
    turns++
    const end = performance.now() + busyMs
    while (performance.now() < end) { /* a busy turn */ }
    setImmediate(spin)
  }
  setImmediate(spin)
  try {
    await fn()
  } finally {
    done = true
  }
  return turns
}

test('an append is durable after one turn of a busy event loop (one write with O_DSYNC, the checks beside it), not four', async t => {
  const dir = await tempDir('vgrid-store-turns-')
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  const s = new StateStore(dir)
  await s.openLog()
  const N = 8
  let turns = 0
  for (let i = 0; i < N; i++) turns += await turnsOf(async () => { await s.append(new Uint8Array(2000).fill(i)) })
  await s.close()
  const back = await new StateStore(dir).read()
  t.is(back.records.length, N)
  // a disk slower than a 50 ms turn costs a turn more now and then; four sequential
  // steps (stat, stat, write, fdatasync) cost at least four every time
  t.true(turns <= N * 2.5, `${turns} turns for ${N} appends`)
})
