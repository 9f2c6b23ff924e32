// The volumes-degraded problem /v1/status shows (node/gvs/volume-problems.ts): named by
// path with each volume's state and first reason, kept for a while, and never waited
// for long when the states hang.
import test from 'ava'
import type { Volume } from '../../crdt/index.ts'
import type { VolumeHealthView } from '../../node/gvs/health.ts'
import { degradedProblem, VolumeProblems } from '../../node/gvs/volume-problems.ts'
import { withNoMajority } from '../../node/gvs/volume-states.ts'
import { stateText } from '../../node/gvs/cli-format.ts'

const vol = (id: string, path: string): Volume => ({ id, path } as unknown as Volume)
const view = (state: VolumeHealthView['state'], reasons: string[] = [], repair: VolumeHealthView['repair'] = null): VolumeHealthView => ({ state, reasons, repair, lastRepair: null })

test('degradedProblem: none while every volume is healthy; else each one not, by path, with its state and first reason', t => {
  const vols = [vol('b', '/shop/web'), vol('a', '/shop/db'), vol('c', '/x')]
  t.is(degradedProblem(vols, new Map([['a', view('healthy')], ['b', view('healthy')]])), null)
  const p = degradedProblem(vols, new Map([
    ['a', view('repairing', ['node n2 is dead'], { done: 45, total: 100 } as unknown as VolumeHealthView['repair'])],
    ['b', view('degraded', ['only 1 live node can hold replicas of R=2', 'more'])],
    ['c', view('healthy')]
  ]))
  t.deepEqual(p, { service: 'gvs', cause: 'volumes-degraded', message: '2 volume(s) are not at full redundancy: /shop/db repairing 45% (node n2 is dead); /shop/web degraded (only 1 live node can hold replicas of R=2)' })
  const many = Array.from({ length: 7 }, (_, i) => vol(`v${i}`, `/v/${i}`))
  t.regex(degradedProblem(many, new Map(many.map(v => [v.id, view('degraded')])))!.message, /^7 volume\(s\) .*\/v\/4 degraded; and 2 more \(vgrid vol ls\)$/)
})

test('VolumeProblems: kept 5 s with its since, asked again after; a refresh that hangs is not waited for past 2 s', async t => {
  let now = 1_000_000
  let states = new Map([['a', view('degraded', ['why'])]])
  let asked = 0
  let hang = false
  const vp = new VolumeProblems({
    volumes: () => [vol('a', '/a')],
    states: async () => { asked++; if (hang) await new Promise(() => {}); return states },
    now: () => now
  })
  const first = await vp.problems()
  t.is(first.length, 1)
  t.is(first[0]!.since, new Date(1_000_000).toISOString())
  now += 2500
  states = new Map([['a', view('healthy')]])
  t.is((await vp.problems()).length, 1, 'kept within 5 s')
  t.is(asked, 1)
  now += 2500
  t.deepEqual(await vp.problems(), [], 'asked again after 5 s')
  t.is(asked, 2)
  // a later problem has a since of its own; a hung refresh leaves the last answer
  states = new Map([['a', view('degraded', ['again'])]])
  now += 10_000
  t.is((await vp.problems())[0]!.since, new Date(now).toISOString())
  hang = true
  now += 10_000
  const t0 = Date.now()
  const kept = await vp.problems()
  t.true(Date.now() - t0 < 3000)
  t.regex(kept[0]!.message, /again/)
})

test('a node that sees no majority: vol ls\'s state and the status problem say it refuses every read and write here, not only that copies are short', t => {
  const vols = [vol('a', '/shop/db'), vol('b', '/shop/web')]
  const why = 'this node sees 2 of the grid\'s 4 members (no majority)'
  const short = view('degraded', ['3 objects have fewer than 3 live copies'])
  const h = withNoMajority(short, why)
  t.is(h.state, 'degraded')
  t.is(h.noMajority, why)
  t.regex(h.reasons[0]!, /^this node sees 2 of the grid's 4 members \(no majority\): not readable or writable here until it sees one/)
  t.is(withNoMajority(h, why), h, 'said once')
  t.is(withNoMajority(short, null), short)
  t.is(withNoMajority(view('healthy'), why).state, 'degraded', 'whatever its copies')
  t.is(stateText(h), 'degraded, no reads or writes here (no majority)')
  t.is(stateText(short), 'degraded')
  const p = degradedProblem(vols, new Map([['a', h], ['b', withNoMajority(view('healthy'), why)]]))
  t.is(p?.message, 'this node sees 2 of the grid\'s 4 members (no majority): no read or write of any volume is done here until it sees one (it cannot tell whether its copies are the newest); 2 volume(s) are not at full redundancy: /shop/db degraded, no reads or writes here (no majority) (3 objects have fewer than 3 live copies); /shop/web degraded, no reads or writes here (no majority)')
})
