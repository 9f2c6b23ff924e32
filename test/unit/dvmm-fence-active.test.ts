// The fence timeout a node runs with, as its VM manager keeps it (node/dvmm/fencing.ts)
// and the record a restart starts from (node/dvmm/fence-record.ts): fed from the
// member table and the roll, told to the watchdog on every change, and after a
// restart no longer than the fence last run until the others are known again.
import test from 'ava'
import { utimesSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Fencing } from '../../node/dvmm/fencing.ts'
import { previousFence, readFenceRecord, writeFenceRecord } from '../../node/dvmm/fence-record.ts'
import { watchdogPaths } from '../../node/dvmm/watchdog/paths.ts'
import { silentLogger } from '../../node/log.ts'
import type { Member } from '../../protocol/membership.ts'

const ME = 'me'
const member = (nodeId: string, fenceTimeoutMs?: number): Member => ({
  nodeId, state: 'alive', since: 0, lastSeen: 0, version: { incarnation: 1, seq: 1 },
  advert: { fenceTimeoutMs } as unknown as Member['advert']
})

function fencing (o: { settingMs: number, previousMs?: number, roll: string[], members: Member[] }): { f: Fencing, told: number[], members: Map<string, Member> } {
  const told: number[] = []
  const members = new Map(o.members.map(m => [m.nodeId, m]))
  const f = new Fencing({
    peerId: ME,
    log: silentLogger,
    clock: { now: () => 0 },
    state: { read: () => ({ list: () => o.roll.map(node => ({ node })) }) as never },
    membership: { members },
    metrics: { fenced: { set: () => {} } } as never,
    local: { live: new Set(), act: async () => {} } as never,
    onActiveFence: ms => { told.push(ms) }
  }, { fenceTimeoutMs: o.settingMs, previousFenceMs: o.previousMs, takeoverMarginMs: 1500, lastAliveAt: 0 })
  f.start()
  return { f, told, members }
}

test('the fence in force follows the other members\' settings, and the watchdog is told each change', t => {
  // restarted: the roll has a and b, not met yet; it ran 5 s last
  const { f, told, members } = fencing({ settingMs: 20_000, previousMs: 5000, roll: [ME, 'a', 'b'], members: [] })
  t.is(f.activeMs, 5000, 'before the others are known: the fence last run')
  f.check(1000)
  t.deepEqual(told, [], 'no change, nothing told')
  members.set('a', member('a', 20_000))
  f.check(2000)
  t.is(f.activeMs, 5000, 'b is still not known')
  members.set('b', member('b', 30_000))
  f.check(3000)
  t.is(f.activeMs, 20_000, 'every member known, each set at least as long: the setting')
  members.set('c', member('c'))
  f.check(4000)
  t.is(f.activeMs, 5000, 'an agent that advertises none waits 5 s')
  members.delete('c')
  f.check(5000)
  t.deepEqual(told, [20_000, 5000, 20_000])
})

test('a new data dir runs its setting; the last feed caps the record', t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-fence-rec-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const { log, warnings } = capture()
  t.is(previousFence(dir, log), undefined)
  t.deepEqual(readFenceRecord(dir), { none: true })
  writeFenceRecord(dir, 20_000)
  t.deepEqual(readFenceRecord(dir), { activeMs: 20_000 })
  t.is(previousFence(dir, log), 20_000)
  // a watchdog feed of a release that kept no record (no fenceMs): it ran 5 s
  const p = watchdogPaths(dir)
  mkdirSync(p.dir, { recursive: true })
  writeFileSync(p.feed, JSON.stringify({ seq: 4, pid: 1, timeoutMs: 3000 }))
  t.is(previousFence(dir, log), 5000)
  writeFileSync(p.feed, JSON.stringify({ seq: 5, pid: 1, timeoutMs: 12_000, fenceMs: 20_000 }))
  t.is(previousFence(dir, log), 20_000)
  t.deepEqual(warnings, [], 'nothing to warn of')
})

test('a damaged record counts as the fence of the last watchdog feed, or, where no feed says, the shortest fence any node may set; a warning names the file and what is wrong', t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-fence-rec-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'dvmm', 'fence.json')
  writeFenceRecord(dir, 20_000)
  const cases: Array<[string, RegExp]> = [
    ['{"activeMs": 0.5}', /activeMs 0\.5 is outside 3000-600000 ms/],
    ['{"activeMs": 100}', /activeMs 100 is outside/],
    ['{"activeMs": "x"}', /activeMs is "x", not a number/],
    ['{}', /activeMs is missing/],
    ['null', /activeMs is missing/],
    ['not json', /it is not JSON .*"not json"/],
    ['', /it is not JSON/],
    ['{"activeMs": 9999999}', /activeMs 9999999 is outside/]
  ]
  const p = watchdogPaths(dir)
  // the feed is written right after the record at every change (NodeRuntime.setFence): its
  // fenceMs is the fence in force when it was last fed. A feed without one (a release that
  // fed none, junk, a value out of bounds) does not say which fence ran
  const feeds: Array<[string, unknown, number]> = [
    ['no feed', undefined, 3000],
    ['a feed of 20 s', { seq: 5, pid: 1, timeoutMs: 12_000, fenceMs: 20_000 }, 20_000],
    ['a feed of 4 s', { seq: 6, pid: 1, timeoutMs: 2400, fenceMs: 4000 }, 4000],
    ['a feed without fenceMs', { seq: 7, pid: 1, timeoutMs: 3000 }, 3000],
    ['a feed with fenceMs junk', { seq: 8, pid: 1, timeoutMs: 3000, fenceMs: 1e15 }, 3000],
    ['a feed that is not JSON', 'garbage', 3000]
  ]
  for (const [what, feed, want] of feeds) {
    if (feed != null) { mkdirSync(p.dir, { recursive: true }); writeFileSync(p.feed, typeof feed === 'string' ? feed : JSON.stringify(feed)) }
    for (const [junk, why] of cases) {
      writeFileSync(file, junk)
      // damaged by something after its last write, before the feed's
      const past = new Date(Date.now() - 3600_000)
      utimesSync(file, past, past)
      const { log, warnings } = capture()
      t.regex((readFenceRecord(dir) as { damaged: string }).damaged, why, junk)
      t.is(previousFence(dir, log), want, `${junk}, ${what}`)
      t.is(warnings.length, 1, junk)
      t.regex(warnings[0]!.msg, /fence timeout this node last ran with is damaged/)
      t.regex(warnings[0]!.msg, why)
      t.regex(warnings[0]!.msg, want === 3000 ? /the shortest fence timeout any node may set \(3000 ms\)/ : new RegExp(`its watchdog's last feed \\(${want} ms\\)`), what)
      t.is(warnings[0]!.fields?.file, file, 'it names the file')
      t.is(warnings[0]!.fields?.fenceMs, want)
    }
  }
  // a feed older than the record was not written while that record was in force (a
  // watchdog not armed this run is not fed): it does not say
  writeFileSync(p.feed, JSON.stringify({ seq: 9, pid: 1, timeoutMs: 12_000, fenceMs: 20_000 }))
  const older = new Date(Date.now() - 7200_000)
  utimesSync(p.feed, older, older)
  writeFileSync(file, 'not json')
  t.is(previousFence(dir, capture().log), 3000, 'a feed from before the record does not say')
  // a record that cannot be read at all (here: a directory in its place) is damaged too
  rmSync(p.feed)
  rmSync(file)
  mkdirSync(file)
  const { log, warnings } = capture()
  t.is(previousFence(dir, log), 3000)
  t.regex(warnings[0]!.msg, /cannot be read/)
  // the fence in force from it: the shortest until the other members are known
  const { f } = fencing({ settingMs: 20_000, previousMs: previousFence(dir, log), roll: [ME, 'a'], members: [] })
  t.is(f.activeMs, 3000)
  // with a feed of 20 s it runs 20 s (a member knows it ran 20 s)
  writeFileSync(p.feed, JSON.stringify({ seq: 9, pid: 1, timeoutMs: 12_000, fenceMs: 20_000 }))
  t.is(fencing({ settingMs: 30_000, previousMs: previousFence(dir, log), roll: [ME, 'a'], members: [] }).f.activeMs, 20_000)
})

test('an intact record with a junk or unreadable feed: the shorter of the record and 5 s, as before', t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-fence-rec-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const { log, warnings } = capture()
  writeFenceRecord(dir, 20_000)
  const p = watchdogPaths(dir)
  mkdirSync(p.dir, { recursive: true })
  writeFileSync(p.feed, 'garbage')
  t.is(previousFence(dir, log), 5000)
  writeFenceRecord(dir, 4000)
  t.is(previousFence(dir, log), 4000)
  t.deepEqual(warnings, [])
})

function capture (): { log: { warn: (msg: string, fields?: Record<string, unknown>) => void }, warnings: Array<{ msg: string, fields?: Record<string, unknown> }> } {
  const warnings: Array<{ msg: string, fields?: Record<string, unknown> }> = []
  return { log: { warn: (msg, fields) => { warnings.push({ msg, fields }) } }, warnings }
}

test('a node counts towards its majority only the members in sight by the liveness table: cut off from all, alive in its member table, it fences a fence timeout after it lost sight of them', t => {
  const roll = [ME, 'a', 'b', 'c', 'd', 'e', 'f']
  const withWindow = (id: string): Member => ({ ...member(id, 5000), advert: { fenceTimeoutMs: 5000, livenessMs: 3500 } as unknown as Member['advert'] })
  const members = new Map(roll.filter(id => id !== ME).map(id => [id, withWindow(id)]))
  let sight = true
  const f = new Fencing({
    peerId: ME,
    log: silentLogger,
    clock: { now: () => 0 },
    state: { read: () => ({ list: () => roll.map(node => ({ node })) }) as never },
    membership: { members, inSight: () => sight },
    metrics: { fenced: { set: () => {} } } as never,
    local: { live: new Set(), act: async () => {} } as never
  }, { fenceTimeoutMs: 5000, takeoverMarginMs: 1500, lastAliveAt: 0 })
  f.start()
  t.like(f.check(1000), { majority: true, aliveSeen: 7, fenced: false })
  // the cut: the member table still says alive (silence timeout), the counters stopped
  sight = false
  t.like(f.check(3500), { majority: false, aliveSeen: 1, fenced: false })
  t.like(f.check(5999), { fenced: false })
  t.like(f.check(6000), { fenced: true, mayClaim: false })
  // a roll member of an older release (no window): tables are not counted at all (a node
  // whose heartbeat partners are all old would see too few: rv24); takers wait the silence timeout
  members.set('f', member('f', 5000))
  t.like(f.check(7000), { majority: true, aliveSeen: 7, fenced: false })
  // rv25: but one that is not alive here counts for nothing either way, its advert or not
  // (one dead before this node started: never got its advert)
  members.set('f', { ...member('f', 5000), state: 'dead' })
  t.like(f.check(8000), { majority: false, aliveSeen: 1 })
  members.delete('f')
  t.like(f.check(9000), { majority: false, aliveSeen: 1 })
})

test('a member is last heard of no earlier than the liveness tables knew it alive: a takeover counts from the last beat of its that reached the grid (rv25: a link back for a second renewed the holder\'s majority, not the taker\'s wait)', t => {
  const members = new Map([['a', { ...member('a', 5000), state: 'dead' as const, since: 3000, lastSeen: 2500 }]])
  let aliveAt: number | undefined = undefined
  const f = new Fencing({
    peerId: ME,
    log: silentLogger,
    clock: { now: () => 0 },
    state: { read: () => ({ list: () => [ME, 'a'].map(node => ({ node })) }) as never },
    membership: { members, aliveAt: () => aliveAt },
    metrics: { fenced: { set: () => {} } } as never,
    local: { live: new Set(), act: async () => {} } as never
  }, { fenceTimeoutMs: 5000, takeoverMarginMs: 1500, lastAliveAt: 0 })
  f.start()
  f.hear(members)
  t.is(f.lastHeard('a'), 3000, 'its first suspicion, as before')
  aliveAt = 5500
  f.hear(members)
  t.is(f.lastHeard('a'), 5500, 'its beat of 5.5 s reached the grid (a table dated it)')
})
