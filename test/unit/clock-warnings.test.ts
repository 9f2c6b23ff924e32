// The log's clock warning waits until an offset past the bound has lasted (frames held
// up on a loaded machine read as a clock behind for a moment), and says "back" only
// after a warning.
import test from 'ava'
import { ClockWarnings } from '../../node/membership/clock-warnings.ts'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

function watch (offsets: Map<string, { offsetMs: number, over: boolean }>): { w: ClockWarnings, said: string[] } {
  const said: string[] = []
  const w = new ClockWarnings({
    offsetOf: p => offsets.get(p),
    warn: (p, ms) => said.push(`warn ${p} ${ms}`),
    back: (p, ms) => said.push(`back ${p} ${ms}`),
    steadyMs: 60
  })
  return { w, said }
}

test('a crossing that passes within the steady time says nothing', async t => {
  const offsets = new Map([['b', { offsetMs: -400, over: true }]])
  const { w, said } = watch(offsets)
  w.crossed('b', -400, true)
  await sleep(20)
  offsets.set('b', { offsetMs: -10, over: false })
  w.crossed('b', -10, false)
  await sleep(100)
  t.deepEqual(said, [])
})

test('an offset that stays past the bound is one warning with its offset then, and "back" once it returns', async t => {
  const offsets = new Map([['b', { offsetMs: 300, over: true }]])
  const { w, said } = watch(offsets)
  w.crossed('b', 300, true)
  offsets.set('b', { offsetMs: 900, over: true })
  await sleep(100)
  w.crossed('b', 900, true) // a crossing reported again (the member came back) is not a second warning
  await sleep(100)
  t.deepEqual(said, ['warn b 900'])
  w.crossed('b', 5, false)
  t.deepEqual(said, ['warn b 900', 'back b 5'])
})

test('stop drops the warnings due', async t => {
  const offsets = new Map([['b', { offsetMs: 300, over: true }]])
  const { w, said } = watch(offsets)
  w.crossed('b', 300, true)
  w.stop()
  await sleep(100)
  t.deepEqual(said, [])
})
