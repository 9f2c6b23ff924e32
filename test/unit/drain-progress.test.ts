// `vgrid node drain --wait`'s progress (node/dvmm/cli.ts, drainProgress), pure: what
// is still on the node, where each VM that was on it went, and when the drain is done
// (nothing on the node, nothing on its way; a VM that fits nowhere stays pending).
import test from 'ava'
import { drainProgress, drainWait, historyLine } from '../../node/dvmm/cli.ts'
import { asFlags } from '../../node/dvmm/command-flags.ts'
import { awayForGood, type VolumesAnswer } from '../../node/dvmm/drain-volumes.ts'
import type { NodeView } from '../../node/api/types.ts'
import { CliError } from '../../node/cli/client.ts'
import type { VmRow } from '../../node/dvmm/index.ts'

const row = (name: string, nodeId: string | null, state: VmRow['state'], reason: string | null = null): VmRow =>
  ({ id: name, name, app: null, desired: 'running', state, node: nodeId == null ? null : `name-${nodeId}`, nodeId, epoch: nodeId == null ? null : 1, cpu: 1, memoryBytes: 1, driver: 'process', reason })

test('drain progress: on the node, on its way, moved, stranded', t => {
  const initial = ['a', 'b']
  let p = drainProgress('n1', [row('a', 'n1', 'stopping'), row('b', 'n1', 'running'), row('c', 'n2', 'running')], initial)
  t.deepEqual(p, { on: ['a', 'b'], moved: {}, done: false, stranded: [], moving: [] })
  p = drainProgress('n1', [row('a', null, 'pending', 'waiting for a claim to settle'), row('b', 'n1', 'running')], initial)
  t.deepEqual(p.moved, { a: 'pending (waiting for a claim to settle)' })
  t.false(p.done)
  p = drainProgress('n1', [row('a', 'n2', 'starting'), row('b', 'n3', 'running')], initial)
  t.deepEqual(p, { on: [], moved: { a: 'starting on name-n2', b: 'running on name-n3' }, done: false, stranded: [], moving: ['a'] }, 'a is still starting (what a timeout names: bb20 read "still 0 VM(s) on it: ")')
  p = drainProgress('n1', [row('a', 'n2', 'running'), row('b', null, 'pending', 'no node fits (2 lack cpu); e.g. n2: ...')], initial)
  t.true(p.done, 'a VM that fits nowhere ends the wait, pending with its reason')
  t.is(p.moved.b, 'pending (no node fits (2 lack cpu); e.g. n2: ...)')
  t.deepEqual(p.stranded, ['b'], 'and it is stranded: it runs nowhere')
  t.deepEqual(drainProgress('n1', [row('b', 'n2', 'running')], initial).moved, { a: 'removed', b: 'running on name-n2' })
  // moved to a node that then died: on its way while it can move on, stranded when nothing fits it
  p = drainProgress('n1', [row('a', 'n2', 'running'), row('b', 'n3', 'unknown', 'its node h3 is not alive; it moves once that node\'s fence timeout has passed')], initial)
  t.false(p.done)
  p = drainProgress('n1', [row('a', 'n2', 'running'), row('b', 'n3', 'unknown', 'its node h3 is not alive; no other node fits it: no node fits (2 lack cpu)')], initial)
  t.true(p.done)
  t.deepEqual(p.stranded, ['b'])
})

test('drain progress: a stopped or failed VM whose lease the node holds is not on it (it runs nothing and is placed anew when started)', t => {
  const p = drainProgress('n1', [row('a', 'n1', 'failed', '3 crashes within 24 h'), row('b', 'n1', 'stopped'), row('c', 'n2', 'running')], ['c'])
  t.deepEqual(p.on, [])
  t.true(p.done)
  // one that stopped there after the drain began counts as moved: it is stopped
  t.deepEqual(drainProgress('n1', [row('a', 'n1', 'stopped')], ['a']), { on: [], moved: { a: 'stopped on name-n1' }, done: true, stranded: [], moving: [] })
})

test('vm show\'s history line says a stop\'s node once, not again from the lease\'s reason', t => {
  t.is(historyLine({ at: 'T', event: 'stopped', node: 'h2', detail: 'stopped on h2: desired stopped' }), 'T  stopped on h2: desired stopped')
  t.is(historyLine({ at: 'T', event: 'failed-over', node: 'h3', epoch: 2, detail: 'from h1' }), 'T  failed-over on h3 (epoch 2): from h1')
  t.is(historyLine({ at: 'T', event: 'started', node: 'h3', clockMs: 90_000 }), 'T  started on h3  [h3\'s clock runs 90.0 s ahead: shown in this node\'s time]')
  t.is(historyLine({ at: 'T', event: 'killed', node: 'h1', detail: 'killed: fenced: sees 1 of 4 roll members' }), 'T  killed on h1: fenced: sees 1 of 4 roll members', 'not "killed: killed:" (bb44)')
  // a detail's newlines, written escaped: its lines below it, not a literal \n (bb53)
  t.is(historyLine({ at: 'T', event: 'failed', node: 'h1', detail: 'start failed: qemu: -drive x: Could not open\\r\\nqemu: giving up\\n\\n' }), 'T  failed on h1: start failed: qemu: -drive x: Could not open\n    qemu: giving up')
  t.is(historyLine({ at: 'T', event: 'crashed', node: 'h1', detail: 'a\x1b[31m\\nb\x07' }), 'T  crashed on h1: a\\x1b[31m\n    b\\x07', 'each line escaped')
  t.is(historyLine({ at: 'T', event: 'killed', node: 'h1', local: true }), 'T  killed on h1  [seen by this node only]')
})

/** answers GET /v1/vms with `vms`, GET /v1/nodes/ID with `node` (a 404 without), and GET /v1/volumes with each of `volumes` in turn (the last one again) */
const fakeApi = (vms: VmRow[], volumes: VolumesAnswer[], node?: Pick<NodeView, 'state' | 'restarting'>): { get: <T>(path: string) => Promise<T> } => ({
  get: async <T>(path: string): Promise<T> => {
    if (path.startsWith('/v1/nodes/')) {
      if (node == null) throw new CliError('no node', 1, { code: 'not_found' })
      return node as T
    }
    return (path === '/v1/vms' ? { vms } : volumes.length > 1 ? volumes.shift()! : volumes[0]!) as T
  }
})
const volume = (copiesOn: Record<string, number>, state = 'healthy'): VolumesAnswer['volumes'][number] => ({ path: '/r1', state: 'ready', health: { state, copiesOn } } as VolumesAnswer['volumes'][number])

test('drain --wait follows the volume copies also when a VM was left to run nowhere (--force), and says so (bb30)', async t => {
  const vms = [row('pin', null, 'pending', 'no node fits (1 lacks the label)')]
  const api = fakeApi(vms, [
    { volumes: [volume({ n1: 3, n2: 13 }, 'repairing')], evacuation: { nodes: ['n2'] } },
    { volumes: [volume({ n1: 16 })], evacuation: { nodes: ['n2'] } }
  ])
  const err = await t.throwsAsync(drainWait(api, { node: 'n2', name: 'h2', vms: ['pin'] }, 30_000, false))
  t.regex(err?.message ?? '', /^h2: drained \(and its volume copies\), but 1 VM\(s\) run nowhere now, no other node fits them: pin/)
})

test.serial('drain --wait does not take a node that is not alive (restarting) for one that holds nothing (bb30)', async t => {
  const api = fakeApi([row('a', 'n1', 'running')], [
    { volumes: [volume({ n1: 19 }, 'degraded')], evacuation: { nodes: [], away: ['n3'] } },
    { volumes: [volume({ n1: 19, n3: 18 }, 'repairing')], evacuation: { nodes: ['n3'] } },
    { volumes: [volume({ n1: 37 })], evacuation: { nodes: ['n3'] } }
  ], { state: 'dead', restarting: { since: new Date().toISOString(), fenceMs: 35_000 } })
  const lines: string[] = []
  const write = process.stdout.write.bind(process.stdout)
  process.stdout.write = ((chunk: string) => { lines.push(String(chunk).trimEnd()); return true }) as typeof process.stdout.write
  try { await drainWait(api, { node: 'n3', name: 'h3', vms: [] }, 30_000, false) } finally { process.stdout.write = write }
  t.regex(lines.join('\n'), /h3 is not alive now \(restarting\?\)/)
  t.regex(lines.at(-1) ?? '', /^h3: drained; 0 VM\(s\) moved off it, and its volume copies$/)
})

test.serial('drain --wait on a node that is down and not restarting ends, naming vgrid node forget, instead of waiting out its timeout (bb36)', async t => {
  const api = fakeApi([row('a', 'n1', 'running')], [{ volumes: [volume({ n1: 19 }, 'degraded')], evacuation: { nodes: [], away: ['n3'] } }], { state: 'dead', restarting: null })
  const t0 = Date.now()
  const write = process.stdout.write.bind(process.stdout)
  process.stdout.write = (() => true) as typeof process.stdout.write
  const err = await t.throwsAsync(drainWait(api, { node: 'n3', name: 'h3', vms: [] }, 300_000, false)).finally(() => { process.stdout.write = write })
  t.true(Date.now() - t0 < 60_000, 'ends long before the timeout')
  t.regex(err?.message ?? '', /^h3: its VMs moved off it, but it is down and not restarting, so no copy can move off it .*`vgrid node forget h3`/)
})

test('awayForGood: a node dead with no restart under way, or one this agent does not know (404), yes; alive, suspect, left (a restart with the grace off) or restarting under its grace, no (rv41)', t => {
  t.true(awayForGood(null))
  t.true(awayForGood({ state: 'dead', restarting: null }))
  t.false(awayForGood({ state: 'alive', restarting: null }))
  t.false(awayForGood({ state: 'suspect', restarting: null }))
  t.false(awayForGood({ state: 'left', restarting: null }))
  t.false(awayForGood({ state: 'dead', restarting: { since: '2026-12-06T11:59:50Z', fenceMs: 35_000 } }))
})

test.serial('drain --wait counts a VM removed meanwhile as removed, not moved (bb38: "2 moved" of one moved, one removed)', async t => {
  const api = fakeApi([row('b', 'n2', 'running')], [{ volumes: [], evacuation: { nodes: ['n1'] } }], { state: 'alive', restarting: null })
  const lines: string[] = []
  const write = process.stdout.write.bind(process.stdout)
  process.stdout.write = ((chunk: string) => { lines.push(String(chunk).trimEnd()); return true }) as typeof process.stdout.write
  try { await drainWait(api, { node: 'n1', name: 'h1', vms: ['a', 'b'] }, 30_000, false) } finally { process.stdout.write = write }
  t.is(lines.at(-1), 'h1: drained; 1 VM(s) moved off it (1 removed meanwhile)')
})

test('vm create: an API error naming volumes[i] is said as the --volume flag given (bb38)', t => {
  const e = asFlags(new CliError('volumes[1]: no volume "/srv/data" (400 invalid)', 2, { code: 'invalid', detail: 'volumes[1]: no volume "/srv/data"' }), ['/os/root', '/srv/data']) as CliError
  t.is(e.message, '--volume "/srv/data": no volume "/srv/data" (400 invalid)')
  t.is(e.detail, '--volume "/srv/data": no volume "/srv/data"', '--json: without the code the text form appends (rv42)')
  t.is(e.exitCode, 2)
  t.is(e.code, 'invalid')
  const other = new CliError('name: taken', 2)
  t.is(asFlags(other, ['/a']), other)
})

test.serial('drain --wait whose agent goes away says the drain stands and how to follow it (bb40: only ECONNRESET)', async t => {
  const api = { get: async () => { throw new CliError('the agent at 127.0.0.1:7401 closed the connection without an answer (ECONNRESET)', 1, { code: 'error' }) } }
  const write = process.stdout.write.bind(process.stdout)
  process.stdout.write = (() => true) as typeof process.stdout.write
  const err = await t.throwsAsync(drainWait(api as never, { node: 'n3', name: 'h3', vms: ['a'] }, 30_000, false)).finally(() => { process.stdout.write = write })
  t.is(err?.message, 'the agent at 127.0.0.1:7401 closed the connection without an answer (ECONNRESET) (the drain of h3 stands, in the grid\'s document; follow it with `vgrid node drain h3 --wait`, through another node if this one is down)')
  t.is((err as CliError).code, 'error')
})

test('asFlags: vm update names a volume it could not attach by --attach, not by its place in the list it sent (bb53)', t => {
  const e = asFlags(new CliError('volumes[1]: no volume "/nope" (400 invalid)', 2, { code: 'invalid', detail: 'volumes[1]: no volume "/nope"' }), ['vol-1', '/nope'], '--attach') as CliError
  t.is(e.message, '--attach "/nope": no volume "/nope" (400 invalid)')
})
