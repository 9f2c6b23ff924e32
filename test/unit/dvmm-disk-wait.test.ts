// A VM is not started while one of its disks has objects no live node holds the newest
// copy of (node/dvmm/vm-disks.ts): a tester's qemu VM, failed over from the dead node that
// held its R=1 volume's only copies, booted with "I/O error, dev vda, sector 0", and
// nothing said to restart it once that node was back. It waits instead, saying why, and
// starts once the disk reads. A disk with fewer copies than R, every object readable,
// holds nothing back.
import test from 'ava'
import { volumeHealth, type LayerCopies } from '../../node/gvs/health.ts'
import { diskWaitReason, disksReadable, DiskWait, downWriters, unreadableObjects, type DiskHealth, type VolumeAccess } from '../../node/dvmm/vm-disks.ts'
import type { Vm } from '../../crdt/index.ts'
import type { Member, MemberTable } from '../../protocol/membership.ts'

const live = (...ids: string[]): Set<string> => new Set(ids)
const layer = (objects: Array<[number, string[]]>, extra: Partial<LayerCopies> = {}): LayerCopies => ({ layer: 'v1', objects: new Map(objects), ...extra })
/** the volume store's own health of a volume (node/gvs/health.ts), as GvsService.health answers it */
const health = (replicas: number, alive: Set<string>, copies: LayerCopies[]): DiskHealth => volumeHealth({ replicas, minReplicas: 1, live: alive, copies, repair: null, lastRepair: null })

test('objects whose every writer is down (unavailable) cannot be read: counted from the volume store\'s own health', t => {
  // the tester's case: host1 held the R=1 volume's objects 0 and 2 and died; the inventory asks live nodes only
  const h = health(1, live('h2', 'h3', 'h4'), [layer([[1, ['h2']], [3, ['h3']]], { unavailable: 2 })])
  t.is(h.state, 'degraded')
  t.is(unreadableObjects(h), 2)
  t.is(unreadableObjects(health(1, live('h2'), [layer([], { unavailable: 1 })])), 1, 'one object: "1 object is unavailable"')
})

test('objects an inventory found only on nodes now down (no live copy) cannot be read either', t => {
  // an inventory taken while h1 was alive, read after it died
  const h = health(1, live('h2', 'h3'), [layer([[0, ['h1']], [1, ['h2']], [2, ['h1']]])])
  t.is(unreadableObjects(h), 2)
  // both at once add up
  t.is(unreadableObjects(health(1, live('h2', 'h3'), [layer([[0, ['h1']], [1, ['h2']]], { unavailable: 1 })])), 2)
})

test('degraded but readable (fewer than R live copies, each object with one) holds nothing back; nor healthy, nor unknown', t => {
  const short = health(2, live('h2', 'h3'), [layer([[0, ['h1', 'h2']], [1, ['h2', 'h3']], [2, ['h3', 'h1']]])])
  t.is(short.state, 'degraded')
  t.regex(short.reasons.join('\n'), /fewer than 2 live copies/)
  t.is(unreadableObjects(short), 0)
  t.is(unreadableObjects(health(2, live('h2', 'h3'), [layer([[0, ['h3', 'h2']]])])), 0, 'healthy')
  t.is(unreadableObjects(health(1, live('h2'), [layer([], { unavailable: 0 })])), 0)
  t.is(unreadableObjects(undefined), 0, 'not known')
  t.is(unreadableObjects({ state: 'degraded', reasons: ['no inventory of its copies yet'] }), 0)
  // the volume store's own count, where it gives one, over its reasons
  t.is(unreadableObjects({ state: 'degraded', reasons: ['2 objects are unavailable, ...'], unreadable: 5 }), 5)
  t.is(unreadableObjects({ state: 'healthy', reasons: [], unreadable: 0 }), 0)
})

test('the nodes a disk waits for: those its write intervals in force place copies on that are down, not those given up', t => {
  const interval = (ids: string[], at: number, lost?: string[]) => ({ nodes: ids.map(id => ({ id, weight: 100 })), at, ...(lost != null ? { lost } : {}) })
  const v = { writeIntervals: { aaaaaaaaaaaaaaaa: interval(['h1', 'h2', 'h3'], 10), bbbbbbbbbbbbbbbb: interval(['h2', 'h3', 'h5'], 20, ['h5']) } }
  t.deepEqual(downWriters(v, n => n === 'h2' || n === 'h3'), ['h1'], 'h5 given up by a forget')
  t.deepEqual(downWriters(v, () => false), ['h1', 'h2', 'h3'])
  // intervals cleared by a healthy repair no longer count
  t.deepEqual(downWriters({ ...v, writeIntervalsClearedBefore: 15 }, n => n !== 'h1' && n !== 'h5'), [])
  t.deepEqual(downWriters(undefined, () => false), [])
  // a node with no weight (draining, no disk) took no copies
  t.deepEqual(downWriters({ writeIntervals: { cccccccccccccccc: { nodes: [{ id: 'h1', weight: 0 }, { id: 'h2', weight: 1 }], at: 1 } } }, () => false), ['h2'])
})

test('the reason a VM waits with: its disk, how many objects, where their newest copies are', t => {
  const unavailable = health(1, live('h2', 'h3', 'h4'), [layer([[1, ['h2']]], { unavailable: 2 })])
  t.is(diskWaitReason([{ path: '/shop2/r1', health: unavailable, down: ['host1'] }]),
    'waiting for its disk /shop2/r1: 2 objects are unavailable (their newest copies are on host1, down); it starts once they are readable again (vgrid node forget of a node gone for good gives its writes up)')
  const one = health(1, live('h2'), [layer([], { unavailable: 1 })])
  t.is(diskWaitReason([{ path: '/a', health: one, down: ['h1', 'h3'] }]),
    'waiting for its disk /a: 1 object is unavailable (their newest copies are on h1 and h3, down); it starts once it is readable again (vgrid node forget of a node gone for good gives its writes up)')
  t.regex(diskWaitReason([{ path: '/a', health: one, down: ['a', 'b', 'c', 'd', 'e'] }])!, /on a, b, c and 2 more, down/)
  t.regex(diskWaitReason([{ path: '/a', health: one, down: [] }])!, /\(the nodes their newest copies are on do not answer\)/)
  // the first disk that cannot be read, and how many more
  const short = health(2, live('h2', 'h3'), [layer([[0, ['h1', 'h2']]])])
  t.regex(diskWaitReason([{ path: '/ok', health: short, down: ['h1'] }, { path: '/b', health: unavailable, down: ['h1'] }, { path: '/c', health: one, down: ['h1'] }])!, /^waiting for its disk \/b: 2 objects are unavailable .* \(and 1 more of its disks\); it starts/)
  // readable: it starts
  t.is(diskWaitReason([{ path: '/ok', health: short, down: ['h1'] }, { path: '/x', health: undefined, down: [] }]), null)
  t.is(diskWaitReason([]), null)
})

const vmWith = (volumes: string[]): Vm => ({ id: 'q1', name: 'q1', app: null, desired: 'running', spec: { driver: 'qemu', cpu: 0.5, memoryBytes: 2 ** 28, volumes, constraints: {}, kernel: '/k' } }) as unknown as Vm

/** a reader with the volume /shop2/r1 written over h1..h4, and h1's roll entry */
const reader = {
  get: (table: string, id: string) => {
    if (table === 'volumes' && id === 'vol1') return { value: { id: 'vol1', path: '/shop2/r1', writeIntervals: { aaaaaaaaaaaaaaaa: { nodes: ['h1', 'h2', 'h3', 'h4'].map(id => ({ id, weight: 1 })), at: 1 } } } }
    if (table === 'roll' && id === 'h1') return { value: { name: 'host1' } }
    return undefined
  }
} as never
const members: MemberTable = new Map(['h1', 'h2', 'h3', 'h4'].map(id => [id, { nodeId: id, state: id === 'h1' ? 'dead' : 'alive', advert: { name: `host${id.slice(1)}` } } as unknown as Member]))
const store = (h: VolumeAccess['health']): VolumeAccess => ({ uriOf: () => 'nbd+unix:///x', fence: async () => {}, health: h })

test('disksReadable: a start throws DiskWait while a disk cannot be read, naming the down node; goes on once it can', async t => {
  let now: DiskHealth = health(1, live('h2', 'h3', 'h4'), [layer([[1, ['h2']], [3, ['h3']]], { unavailable: 2 })])
  const c = { state: { read: () => reader }, volumes: store(async ids => new Map(ids.map(id => [id, now]))), membership: { members } }
  const e = await t.throwsAsync(disksReadable(c, vmWith(['vol1'])), { instanceOf: DiskWait })
  t.is(e?.message, 'waiting for its disk /shop2/r1: 2 objects are unavailable (their newest copies are on host1, down); it starts once they are readable again (vgrid node forget of a node gone for good gives its writes up)')
  // host1 back: healthy, or degraded only for fewer copies
  now = health(1, live('h1', 'h2', 'h3', 'h4'), [layer([[0, ['h1']], [1, ['h2']], [2, ['h1']], [3, ['h3']]])])
  await t.notThrowsAsync(disksReadable(c, vmWith(['vol1'])))
  now = health(2, live('h2', 'h3', 'h4'), [layer([[0, ['h1', 'h2']], [1, ['h2', 'h3']]])])
  await t.notThrowsAsync(disksReadable(c, vmWith(['vol1'])), 'degraded but readable')
})

test('disksReadable: a VM starts as before when the volume store cannot say (no health, an error, no answer in time), or it has no disks', async t => {
  const warned: string[] = []
  const log = { warn: (msg: string) => { warned.push(msg) } }
  const base = { state: { read: () => reader }, membership: { members }, log }
  let asked = 0
  await t.notThrowsAsync(disksReadable({ ...base, volumes: store(async () => { asked++; return new Map() }) }, vmWith([])))
  t.is(asked, 0, 'no disks: nothing asked')
  await t.notThrowsAsync(disksReadable({ ...base, volumes: { uriOf: () => null, fence: async () => {} } }, vmWith(['vol1'])))
  await t.notThrowsAsync(disksReadable({ ...base, volumes: store(async () => { throw new Error('coordinator gone') }) }, vmWith(['vol1'])))
  const t0 = Date.now()
  await t.notThrowsAsync(disksReadable({ ...base, volumes: store(async () => await new Promise(() => {})) }, vmWith(['vol1']), 50))
  t.true(Date.now() - t0 < 2000, 'not held past the wait')
  t.is(warned.length, 2, 'each said')
})
