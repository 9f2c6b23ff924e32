// The pure parts of a volume's state, the repair coordinator, the scrub schedule, the
// GVS environment settings, the status protocol's parsing and the CLI's plain
// progress lines.
import test from 'ava'
import { Writable } from 'node:stream'
import { coordinatorCandidates, coordinatorOf, nextScrubAt, volumeHealth, type HealthInput, type LayerCopies } from '../../node/gvs/health.ts'
import { tuningFromEnv } from '../../node/gvs/config.ts'
import { parseStatusAnswer, parseStatusRequest } from '../../node/gvs/status-protocol.ts'
import { progress, qemuImgPercent } from '../../node/gvs/progress.ts'

const copies = (objects: Record<number, string[]>): LayerCopies[] => [{ layer: 'v', objects: new Map(Object.entries(objects).map(([k, v]) => [Number(k), v])) }]
const base = (over: Partial<HealthInput>): HealthInput => ({
  replicas: 2, minReplicas: 2, live: new Set(['a', 'b', 'c']), copies: copies({ 0: ['a', 'b'], 1: ['b', 'c'], 2: ['a', 'c'] }), repair: null, lastRepair: null, ...over
})

test('every object with R live copies: healthy, no reasons', t => {
  t.deepEqual(volumeHealth(base({})), { state: 'healthy', reasons: [], repair: null, lastRepair: null, copiesOn: { a: 2, b: 2, c: 2 } })
})

test('copiesOn: the copies each node held at the inventory, dead ones too; none without an inventory', t => {
  t.deepEqual(volumeHealth(base({ live: new Set(['a', 'c']) })).copiesOn, { a: 2, b: 2, c: 2 })
  t.false('copiesOn' in volumeHealth(base({ copies: null })))
})

test('a holder dies: degraded, naming how many objects and the node', t => {
  const h = volumeHealth(base({ live: new Set(['a', 'c']) }))
  t.is(h.state, 'degraded')
  t.deepEqual(h.reasons, ['2 objects have fewer than 2 live copies (copies on b, not live)'])
  t.deepEqual(volumeHealth(base({ live: new Set(['a', 'c']), nameOf: n => `node-${n}` })).reasons, ['2 objects have fewer than 2 live copies (copies on node-b, not live)'])
})

test('a live node that did not list its copies (cut from the coordinator alone): the reason says whose word is missing, not that its copies are', t => {
  // b alive but out of reach from the coordinator: its copies are not in the inventory
  const h = volumeHealth(base({ copies: [{ layer: 'v', objects: new Map([[0, ['a']], [1, ['c']], [2, ['a', 'c']]]), unlisted: ['b'] }], nameOf: n => `node-${n}` }))
  t.deepEqual(h.reasons, ['2 objects have fewer than 2 live copies (as far as the nodes that listed their copies say: node-b did not answer this inventory, so copies may be there too)'])
  // shown on every node: named as the coordinator's view (bb15 read it on nodes that reach b well)
  const said = volumeHealth(base({ copies: [{ layer: 'v', objects: new Map([[0, ['a']], [1, ['c']], [2, ['a', 'c']]]), unlisted: ['b'] }], nameOf: n => `node-${n}`, inventoryBy: 'a' }))
  t.deepEqual(said.reasons, ['2 objects have fewer than 2 live copies (as far as the nodes that listed their copies to node-a say: node-b did not answer node-a\'s inventory, out of reach from it, so copies may be there too)'])
})

test('both holders of an object gone: it has no live copy', t => {
  const h = volumeHealth(base({ live: new Set(['c']) }))
  t.is(h.state, 'degraded')
  t.regex(h.reasons.join('\n'), /only 1 live node can hold replicas of R=2: writes fail \(they need at least 2\)/)
  t.regex(h.reasons.join('\n'), /1 object has no live copy \(copies on a, b, not live\): unreadable/)
  t.regex(h.reasons.join('\n'), /2 objects have fewer than 2 live copies/)
  // counted apart for a VM's start, which waits while any object cannot be read (node/dvmm/vm-disks.ts)
  t.is(h.unreadable, 1)
  t.is(volumeHealth(base({ live: new Set(['a', 'c']) })).unreadable, undefined, 'fewer copies than R, each readable: nothing unreadable')
})

test('writes below R through minReplicas: degraded, saying how many copies writes keep', t => {
  const h = volumeHealth(base({ minReplicas: 1, live: new Set(['a']), copies: copies({ 0: ['a'] }) }))
  t.is(h.state, 'degraded')
  t.regex(h.reasons[0]!, /only 1 live node .* writes are kept once \(minReplicas 1\)/)
  // the nodes return: what was written meanwhile is unknown until the next inventory
  const back = volumeHealth(base({ minReplicas: 1, live: new Set(['a', 'b']), copies: copies({ 0: ['a'] }), liveAtInventory: new Set(['a']) }))
  t.is(back.state, 'degraded')
  t.regex(back.reasons.join('\n'), /written while only 1 node was live; b returned, repair pending/)
})

test('a repair under way turns degraded into repairing, unless too few nodes are live to finish it', t => {
  const repair = { node: 'a', startedAt: 1, done: 1, total: 2, bytes: 4, failed: 0 }
  t.is(volumeHealth(base({ live: new Set(['a', 'c']), repair })).state, 'repairing')
  t.is(volumeHealth(base({ live: new Set(['a']), repair })).state, 'degraded')
  // moving copies to a node that joined shows as repairing too; a finished one does not
  t.is(volumeHealth(base({ repair })).state, 'repairing')
  t.is(volumeHealth(base({ repair: { ...repair, done: 2 } })).state, 'healthy')
  // one that has failed copies is not healthy while it runs, nor once all are tried
  const failing = volumeHealth(base({ repair: { ...repair, done: 2, failed: 2 } }))
  t.is(failing.state, 'degraded')
  t.deepEqual(failing.reasons, ['the repair running now could not make 2 object copies so far'])
})

test('objects the inventory finds unavailable (every holder of a write interval down): degraded, said apart, before any repair ran', t => {
  const [layer] = copies({ 0: ['a', 'b'], 1: ['b', 'c'] })
  const h = volumeHealth(base({ copies: [{ ...layer!, unavailable: 3 }] }))
  t.is(h.state, 'degraded')
  t.deepEqual(h.reasons, ['3 objects are unavailable, unreadable and not written until a node that took their writes returns (vgrid node forget of one gone for good gives its writes up)'])
  t.is(volumeHealth(base({ copies: [{ ...layer!, unavailable: 0 }], lastRepair: { node: 'a', at: 1, copied: 0, failed: 2, bytes: 0, lost: 0, unavailable: 2 } })).state, 'healthy', 'the inventory, newer than the last repair, finds them all back')
})

test('no inventory yet, or a last repair that failed copies: degraded, saying so', t => {
  t.deepEqual(volumeHealth(base({ copies: null })).reasons, ['no inventory of its copies yet'])
  const h = volumeHealth(base({ lastRepair: { node: 'a', at: 1, copied: 3, failed: 2, bytes: 9, lost: 0 } }))
  t.is(h.state, 'degraded')
  t.deepEqual(h.reasons, ['the last repair could not make 2 object copies (retried on the next pass)'])
  // where its record has what failed: the first, which names the node and why (bb28: a drain onto a full disk)
  const errors = ['scrub: object 1 of v on c is damaged and was not rewritten: unknown why', 'object 3 to h4: writing object 3 of "v": disk full (ENOSPC)', 'object 5 to h4: ...']
  t.deepEqual(volumeHealth(base({ lastRepair: { node: 'a', at: 1, copied: 3, failed: 2, bytes: 9, lost: 0, errors } })).reasons,
    ['the last repair could not make 2 object copies (retried on the next pass): object 3 to h4: writing object 3 of "v": disk full (ENOSPC)'])
})

test('the repair coordinator: one of the live nodes, the same from any order, moving only when it leaves', t => {
  const nodes = ['n1', 'n2', 'n3', 'n4', 'n5']
  const counts = new Map<string, number>()
  let moved = 0
  for (let i = 0; i < 500; i++) {
    const c = coordinatorOf(`vol-${i}`, nodes)!
    t.is(coordinatorOf(`vol-${i}`, [...nodes].reverse()), c)
    counts.set(c, (counts.get(c) ?? 0) + 1)
    const without = coordinatorOf(`vol-${i}`, nodes.filter(n => n !== 'n3'))
    if (c !== 'n3') t.is(without, c)
    else moved++
  }
  t.is(moved, counts.get('n3') ?? 0)
  for (const n of nodes) t.true((counts.get(n) ?? 0) > 60, `${n} coordinates its share (${counts.get(n) ?? 0} of 500)`)
  t.is(coordinatorOf('v', []), null)
})

test('scrub schedule: every interval at a per-node phase, spread over the interval, never right after the last', t => {
  const H = 3600_000
  const day = 24 * H
  const now = 1_000 * day
  const phases = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map(n => nextScrubAt(n, day, now, null) - now)
  for (const p of phases) t.true(p > 0 && p <= day)
  t.true(new Set(phases.map(p => Math.floor(p / H))).size >= 5, 'nodes start at different hours')
  const next = nextScrubAt('a', day, now, null)
  t.is(nextScrubAt('a', day, next + 1, null), next + day, 'the next one a day later')
  t.is(nextScrubAt('a', day, next - 1, next - 2 * H), next + day, 'a scrub 2 h ago: not again now')
  t.is(nextScrubAt('a', day, next - 1, next - 20 * H), next, 'one 20 h ago: on time')
})

test('GVS settings from the environment, and clear errors for bad ones', t => {
  t.deepEqual(tuningFromEnv({}), {})
  t.deepEqual(tuningFromEnv({ VGRID_GVS_REPAIR_RATE: '8M', VGRID_GVS_REPAIR_DELAY: '1500ms', VGRID_GVS_SCRUB_INTERVAL: '24h', VGRID_GVS_SCRUB_RATE: '20M/s' }),
    { repairBytesPerSecond: 8 * 2 ** 20, repairDelayMs: 1500, scrubIntervalMs: 24 * 3600_000, scrubBytesPerSecond: 20 * 2 ** 20 })
  t.is(tuningFromEnv({ VGRID_GVS_SCRUB_INTERVAL: '0' }).scrubIntervalMs, 0)
  t.throws(() => tuningFromEnv({ VGRID_GVS_REPAIR_RATE: 'fast' }), { message: /VGRID_GVS_REPAIR_RATE: "fast" is not a size/ })
  t.throws(() => tuningFromEnv({ VGRID_GVS_REPAIR_RATE: '0' }), { message: /VGRID_GVS_REPAIR_RATE must be greater than zero/ })
  t.throws(() => tuningFromEnv({ VGRID_GVS_SCRUB_INTERVAL: 'daily' }), { message: /VGRID_GVS_SCRUB_INTERVAL="daily" is not a duration/ })
  // the repair delay is one timer's wait (a longer one would fire at once); the scrub period is kept in smaller waits
  t.throws(() => tuningFromEnv({ VGRID_GVS_REPAIR_DELAY: '1000h' }), { message: 'VGRID_GVS_REPAIR_DELAY="1000h" is longer than 596h' })
  t.is(tuningFromEnv({ VGRID_GVS_SCRUB_INTERVAL: '720h' }).scrubIntervalMs, 720 * 3600_000)
  t.is(tuningFromEnv({ VGRID_GVS_RETIRE_QUIET: '2s' }).retireQuietMs, 2000)
  t.throws(() => tuningFromEnv({ VGRID_GVS_RETIRE_QUIET: 'soon' }), { message: /VGRID_GVS_RETIRE_QUIET="soon" is not a duration/ })
  t.is(tuningFromEnv({ VGRID_GVS_LOCAL_CACHE: '2G' }).localCacheBytes, 2 * 2 ** 30)
  t.is(tuningFromEnv({ VGRID_GVS_LOCAL_CACHE: '0' }).localCacheBytes, 0, 'no cache')
  t.throws(() => tuningFromEnv({ VGRID_GVS_LOCAL_CACHE: 'lots' }), { message: /VGRID_GVS_LOCAL_CACHE: "lots" is not a size/ })
})

test('status protocol: requests are checked, answers keep only well-formed entries', t => {
  t.deepEqual(parseStatusRequest({ volumes: ['a', 'b'] }), { volumes: ['a', 'b'], writersOnly: false, claim: false })
  t.deepEqual(parseStatusRequest({ volumes: ['a'], writersOnly: true }), { volumes: ['a'], writersOnly: true, claim: false })
  t.deepEqual(parseStatusRequest({ volumes: ['a'], writersOnly: 'yes' }), { volumes: ['a'], writersOnly: false, claim: false }, 'only true asks for less')
  t.deepEqual(parseStatusRequest({ volumes: ['a'], claim: true }), { volumes: ['a'], writersOnly: true, claim: true }, 'a claim asks for writers only')
  t.throws(() => parseStatusRequest({ volumes: 'a' }), { message: /\{"volumes": \[ids\]\}/ })
  t.throws(() => parseStatusRequest(null))
  t.throws(() => parseStatusRequest({ volumes: [''] }))
  t.throws(() => parseStatusAnswer([]), { message: /JSON object/ })
  const a = parseStatusAnswer({
    ok: { writers: 1, health: { state: 'healthy', reasons: [], repair: null, lastRepair: null } },
    oddHealth: { writers: 0, health: { state: 'fine' } },
    claimed: { writers: 0, claiming: true },
    bad: { writers: 'x' },
    copies: { writers: 0, health: { state: 'healthy', reasons: [], repair: null, lastRepair: null, copiesOn: { n1: 3, n2: 2 } } },
    junkCopies: { writers: 0, health: { state: 'healthy', reasons: [], repair: null, lastRepair: null, copiesOn: 'everywhere' } }
  })
  t.deepEqual(Object.keys(a).sort(), ['claimed', 'copies', 'junkCopies', 'oddHealth', 'ok'])
  t.deepEqual(a.copies!.health!.copiesOn, { n1: 3, n2: 2 })
  t.false('copiesOn' in a.junkCopies!.health!, 'a peer\'s junk copies are dropped, the rest of its answer kept')
  t.deepEqual(a.claimed, { writers: 0, claiming: true })
  t.is(a.oddHealth!.health, undefined)
  t.is(a.ok!.health!.state, 'healthy')
  // a field of another type anywhere in a health view (a reviewer's: a reason 7 made
  // sayHealth throw, and every vol ls on a node that asked this peer answered 500)
  const lr = { node: 'n1', at: 1, copied: 0, failed: 0, bytes: 0, lost: 0 }
  const odd = parseStatusAnswer({
    numberReason: { writers: 0, health: { state: 'degraded', reasons: [7], repair: null, lastRepair: null } },
    numberWhy: { writers: 2, health: { state: 'degraded', reasons: ['x'], repair: null, lastRepair: { ...lr, unavailable: 1, unavailableWhy: 3 } } },
    badRepair: { writers: 0, health: { state: 'repairing', reasons: [], repair: { node: 'n1', done: '5' }, lastRepair: null } },
    sound: { writers: 0, health: { state: 'degraded', reasons: ['x'], repair: { node: 'n1', startedAt: 1, done: 1, total: 2, bytes: 9, failed: 0 }, lastRepair: { ...lr, unavailable: 1, unavailableWhy: 'y' }, coordinator: 'n1', later: 'a newer agent\'s field' } }
  })
  t.deepEqual(Object.entries(odd).map(([id, s]) => [id, s.writers, s.health?.state]), [['numberReason', 0, undefined], ['numberWhy', 2, undefined], ['badRepair', 0, undefined], ['sound', 0, 'degraded']])
})

test('progress without a terminal: one plain line per 10 % step; the result on its own stream; qemu-img percentages read', t => {
  let text = ''
  let said = ''
  const out = new Writable({ write (chunk, _enc, cb) { text += String(chunk); cb() } })
  const p = progress('repair /v', { tty: false, out, result: { write: s => { said += s; return true } }, format: (v, total) => `${v}/${total} copies` })
  for (let i = 0; i <= 40; i++) p.update(i, 40)
  p.stop('done')
  const lines = text.trim().split('\n')
  t.is(lines.length, 11)
  t.is(lines[0], 'repair /v: 0% (0/40 copies)')
  t.is(lines[10], 'repair /v: 100% (40/40 copies)')
  // bb50: a script reading stdout got the progress lines mixed into the result
  t.is(said, 'done\n')
  t.is(qemuImgPercent('    (0.00/100%)\r    (45.50/100%)\r'), 45.5)
  t.is(qemuImgPercent('no progress here'), null)
})

test('objects damaged on every copy: unreadable only when some block is damaged on all of them', t => {
  const last = { node: 'a', at: 1, copied: 0, failed: 2, bytes: 0, lost: 0 }
  const unreadable = volumeHealth(base({ lastRepair: { ...last, unsound: 1 } }))
  t.is(unreadable.state, 'degraded')
  t.regex(unreadable.reasons.join('\n'), /1 object has blocks damaged on every copy a scrub or a read checked: unreadable there until rewritten/)
  const readable = volumeHealth(base({ lastRepair: { ...last, unrewritten: 1 } }))
  t.is(readable.state, 'degraded')
  t.notRegex(readable.reasons.join('\n'), /unreadable/)
  t.regex(readable.reasons.join('\n'), /1 object is damaged on every copy a scrub checked, each block sound on some copy \(reads succeed\), but the copies could not be rewritten/)
})

test('coordinatorCandidates: a node that does not reach a live node coordinates nothing while another reaches them all (bb30)', t => {
  const live = new Set(['a', 'b', 'c'])
  const cut: Record<string, string[]> = { b: ['c'], c: ['b'] }
  t.deepEqual([...coordinatorCandidates(live, n => cut[n])], ['a'])
  t.is(coordinatorOf('some-volume', coordinatorCandidates(live, n => cut[n])), 'a')
  t.deepEqual([...coordinatorCandidates(live, () => undefined)].sort(), ['a', 'b', 'c'], 'no cut: every live node')
  t.deepEqual([...coordinatorCandidates(live, n => n === 'a' ? ['b'] : ['a'])].sort(), ['a', 'b', 'c'], 'none reaches all: every live node, as before')
  t.deepEqual([...coordinatorCandidates(live, n => n === 'a' ? ['dead-one'] : undefined)].sort(), ['a', 'b', 'c'], 'a node not live does not count')
})
