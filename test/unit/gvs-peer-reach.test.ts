// PeerReach (node/gvs/peer-reach.ts): when calls waiting on a peer get it probed, how a
// peer found out of reach blocks calls and is probed again with backoff, and what
// brings it back.
import test from 'ava'
import { PeerReach } from '../../node/gvs/peer-reach.ts'

const init = { stallMs: 2000, firstBackoffMs: 1000, maxBackoffMs: 4000 }

test('a peer is probed only once calls have waited on it for stallMs with nothing heard', t => {
  const r = new PeerReach(init)
  r.begin('a', 0)
  t.deepEqual(r.toProbe(1999), [])
  r.heard('a', 1500) // a reply to another call: the peer is in reach
  t.deepEqual(r.toProbe(3000), [])
  t.deepEqual(r.toProbe(3500), ['a'])
  // one probe at a time
  t.deepEqual(r.toProbe(4000), [])
  t.false(r.probed('a', 4000, true))
  t.is(r.blocked('a'), undefined)
  // nothing pending: nothing to probe, however long it stays quiet
  r.end('a', 4100, true)
  t.deepEqual(r.toProbe(100_000), [])
  t.false(r.busy())
})

test('a probe without answer blocks calls; it is probed again with doubling backoff until it answers', t => {
  const r = new PeerReach(init)
  r.begin('a', 0)
  t.deepEqual(r.toProbe(2000), ['a'])
  t.true(r.probed('a', 6000, false, 'no answer to a ping'), 'it just went down')
  t.like(r.blocked('a'), { since: 6000, why: 'no answer to a ping', until: 7000 })
  r.end('a', 6000, false)
  t.true(r.busy(), 'a down peer keeps the probe timer going')
  t.deepEqual(r.toProbe(6999), [])
  t.deepEqual(r.toProbe(7000), ['a'])
  t.false(r.probed('a', 7000, false), 'still down, not newly')
  t.like(r.blocked('a'), { since: 6000, until: 9000 })
  t.deepEqual(r.toProbe(9000), ['a'])
  r.probed('a', 9000, false)
  t.deepEqual(r.toProbe(13_000), ['a'])
  r.probed('a', 13_000, false)
  t.like(r.blocked('a'), { until: 17_000 }, 'the backoff stops doubling at maxBackoffMs')
  t.deepEqual(r.downPeers().map(([p]) => p), ['a'])
  t.deepEqual(r.toProbe(17_000), ['a'])
  r.probed('a', 17_000, true)
  t.is(r.blocked('a'), undefined)
  t.false(r.busy())
})

test('anything heard from a down peer brings it back; forget drops it', t => {
  const r = new PeerReach(init)
  r.begin('a', 0)
  r.toProbe(2000)
  r.probed('a', 6000, false)
  r.heard('a', 6500)
  t.is(r.blocked('a'), undefined)
  r.begin('b', 0)
  r.toProbe(2000)
  r.probed('b', 6000, false)
  r.forget('b')
  t.is(r.blocked('b'), undefined)
  t.deepEqual(r.downPeers(), [])
})

test('other peers are judged apart', t => {
  const r = new PeerReach(init)
  r.begin('a', 0)
  r.begin('b', 1000)
  t.deepEqual(r.toProbe(2500), ['a'])
  t.deepEqual(r.toProbe(3000), ['b'])
})

test('a peer wanted (membership suspects it) is probed at once, with no call waiting', t => {
  const r = new PeerReach(init)
  r.want('a', 0)
  t.true(r.busy())
  t.deepEqual(r.toProbe(0), ['a'])
  t.deepEqual(r.toProbe(10), [], 'once')
  t.true(r.probed('a', 4000, false))
  t.truthy(r.blocked('a'))
})

test('knows: a forgotten peer is not watched (a probe that ends after membership dropped it is not the watch\'s)', t => {
  const r = new PeerReach(init)
  r.want('a', 0)
  t.deepEqual(r.toProbe(0), ['a'])
  t.true(r.knows('a'))
  r.forget('a')
  t.false(r.knows('a'))
})

test('a down peer wanted (a new connection to it: the cut healed) is probed at once, not at the end of its backoff', t => {
  const r = new PeerReach(init)
  r.begin('a', 0)
  t.deepEqual(r.toProbe(2000), ['a'])
  t.true(r.probed('a', 6000, false, 'no answer to a ping'))
  t.deepEqual(r.toProbe(6500), [], 'backing off')
  r.want('a', 6600)
  t.deepEqual(r.toProbe(6600), ['a'])
  t.false(r.probed('a', 6700, true))
  t.is(r.blocked('a'), undefined)
})
