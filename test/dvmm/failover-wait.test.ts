// What a takeover waits for, as `vgrid ha` says it (DvmmService.failoverWait): in a grid of
// more than five, the liveness window only once every node has advertised one for a
// silence timeout (a cut-off holder's view of the adverts may lag this node's: rv24).
import test from 'ava'
import { harness, member, sleep, type Harness } from './fence-harness.ts'
import type { Member } from '../../protocol/membership.ts'

const withWindow = (id: string): Member => { const m = member(id, 'alive'); return { ...m, advert: { ...m.advert, livenessMs: 3500 } as Member['advert'] } }

test('the failover wait counts the liveness window only once every node has advertised one for a silence timeout; a node without one brings the silence timeout back', async t => {
  const others = ['Nb', 'Nc', 'Nd', 'Ne', 'Nf', 'Ng']
  const silenceMs = 1500
  const h: Harness = await harness({ others, detection: () => ({ watchers: 4, silenceMs, agents: 7, livenessMs: 3500 }) })
  t.teardown(async () => { await h.stop() })
  // the harness's members advertise no window (an older release)
  const first = h.dvmm.ha().failover!
  t.is(first.ms, 5000 + silenceMs + 500, 'fence timeout + the silence timeout + margin')
  t.regex(first.why, /the silence timeout 1\.5 s \(Nb, Nc, Nd and 4 more advertise no liveness window: older releases, or not heard from\)/)
  for (const id of ['Nme', ...others]) h.members.set(id, withWindow(id))
  const lately = h.dvmm.ha().failover!
  t.is(lately.ms, 5000 + silenceMs + 500, 'every node has a window now, but not for a silence timeout yet')
  t.regex(lately.why, /every node has advertised a liveness window only lately/)
  await sleep(silenceMs + 100)
  const now = h.dvmm.ha().failover!
  t.is(now.ms, 5000 + 3500 + 500)
  t.regex(now.why, /the fence timeout 5 s \+ the liveness window 3\.5 s \(a node cut off from all loses sight of the others only that long after the cut\) \+ a margin of 0\.5 s/)
  // one node back to an older release
  h.members.set('Nd', member('Nd', 'alive'))
  t.regex(h.dvmm.ha().failover!.why, /the silence timeout 1\.5 s \(Nd advertises no liveness window: an older release, or not heard from\)/)
})

test('in a grid of five or fewer, the failover wait is the fence timeout and the margin', async t => {
  const h = await harness({ others: ['Nb', 'Nc'], detection: () => ({ watchers: 4, silenceMs: 30_000, agents: 3, livenessMs: 3500 }) })
  t.teardown(async () => { await h.stop() })
  t.deepEqual(h.dvmm.ha().failover, { ms: 5500, why: 'the fence timeout 5 s + a margin of 0.5 s' })
})
