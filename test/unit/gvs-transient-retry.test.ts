// A request retried while it fails for a moment (node/gvs/transient-retry.ts): waited
// for until a cause's known end, then a window of its own, and never longer, whatever
// the errors say.
import test from 'ava'
import { retryTransient } from '../../node/gvs/transient-retry.ts'
import { GvsError } from '../../node/gvs/errors.ts'

test('a cause whose end keeps moving, with no start to count from, holds a request no longer than its first end and a window after it (bb37: a read answered after ten minutes)', async t => {
  const t0 = Date.now()
  let tries = 0
  const err = await t.throwsAsync(retryTransient(300, () => false, async () => {
    tries++
    // members "due back" always a while from now (a record the clock keeps ahead of), no since
    throw new GvsError('unavailable', 'waits for a member due back', { transient: true, until: Date.now() + 400 })
  }))
  t.regex(err?.message ?? '', /due back/)
  const took = Date.now() - t0
  t.true(took < 2500, `gave up after ${took} ms (the first end, 400 ms, and a window of 300 ms)`)
  t.true(took >= 600, `not before the first end and a window after it (${took} ms)`)
  t.true(tries > 1)
})

test('a cause due to end by a known time is waited for until then, and what follows gets a window of its own', async t => {
  const until = Date.now() + 500
  let tries = 0
  const r = await retryTransient(200, () => false, async () => {
    tries++
    if (Date.now() < until) throw new GvsError('unavailable', 'members restarting', { transient: true, until })
    // back, but their services not answering yet for a moment
    if (Date.now() < until + 150) throw new GvsError('unavailable', 'not answering yet', { transient: true })
    return 'done'
  })
  t.is(r, 'done')
  t.true(tries > 2)
})

test('a failure that is not a moment\'s is not retried', async t => {
  let tries = 0
  await t.throwsAsync(retryTransient(5000, () => false, async () => { tries++; throw new GvsError('io', 'disk') }))
  t.is(tries, 1)
})
