// LiveVolume (node/gvs/live-volume.ts): the device an NBD session keeps while the volume
// under it changes. A failed flush of the old device at a switch (a snapshot) must reach
// the writer's next flush, whichever request happened to trigger the switch.
import test from 'ava'
import { LiveVolume } from '../../node/gvs/live-volume.ts'
import type { BlockDevice } from '../../node/gvs/block-device.ts'
import { GvsError } from '../../node/gvs/errors.ts'

function device (flushes: { fail: boolean, count: number }): BlockDevice {
  return {
    size: 4096,
    readOnly: false,
    read: async (_o, length) => new Uint8Array(length),
    write: async () => {},
    flush: async () => {
      flushes.count++
      if (flushes.fail) { flushes.fail = false; throw new Error('EIO: the old top\'s flush failed') }
    },
    trim: async () => {},
    writeZeroes: async () => {}
  }
}

test('a failed flush of the old device at a switch fails the request that made the switch and the next flush, once', async t => {
  const oldFlushes = { fail: true, count: 0 }
  const newFlushes = { fail: false, count: 0 }
  const old = device(oldFlushes)
  const top = device(newFlushes)
  let current = old
  const live = new LiveVolume(() => current, 'v')
  await live.write(0, new Uint8Array(512), false)
  current = top // a snapshot: writes go to a new top layer
  await t.throwsAsync(live.read(0, 512), { message: /old top/ }, 'the read that switched')
  await t.notThrowsAsync(live.read(0, 512), 'the switch is tried again, and its flush now passes')
  t.is(oldFlushes.count, 2)
  await t.throwsAsync(live.flush(), { message: /old top/ }, 'the writer learns that writes before the switch may be lost')
  await t.notThrowsAsync(live.flush())
  t.is(newFlushes.count, 2)
})

test('a flush that made a failed switch reports it; the next flush does not again', async t => {
  const oldFlushes = { fail: true, count: 0 }
  let current = device(oldFlushes)
  const live = new LiveVolume(() => current, 'v')
  await live.write(0, new Uint8Array(512), false)
  current = device({ fail: false, count: 0 })
  await t.throwsAsync(live.flush(), { message: /old top/ })
  await t.notThrowsAsync(live.flush())
})

/** a device whose layer a snapshot froze: every write is refused as frozen (frozen-layers.ts) */
function frozenDevice (writes: number[]): BlockDevice {
  return {
    ...device({ fail: false, count: 0 }),
    write: async o => { writes.push(o); throw new GvsError('frozen', 'layer "v" was frozen by a snapshot') }
  }
}

test('a write refused as frozen waits for the switch to the new top and lands there, after the old device\'s flush; other requests go on meanwhile', async t => {
  const refused: number[] = []
  const events: string[] = []
  const old = frozenDevice(refused)
  let current: BlockDevice = { ...old, flush: async () => { events.push('old flushed') } }
  const live = new LiveVolume(() => current, 'v')
  const w = live.write(4096, new Uint8Array(512), false)
  await new Promise(resolve => setTimeout(resolve, 120))
  t.deepEqual(refused, [4096], 'tried once on the frozen layer, then waiting')
  await t.notThrowsAsync(live.read(0, 512), 'a read is not held by the waiting write')
  current = { ...device({ fail: false, count: 0 }), write: async o => { events.push(`new wrote ${o}`) } }
  await w
  t.deepEqual(events, ['old flushed', 'new wrote 4096'], 'written again on the new top, once the old one was flushed')
})

test('a write refused as frozen fails with a clear error when the document never shows the snapshot', async t => {
  const frozen = frozenDevice([])
  const live = new LiveVolume(() => frozen, 'v', { frozenWaitMs: 200 })
  await t.throwsAsync(live.write(0, new Uint8Array(512), false), { message: /snapshot froze the layer.*has not shown that snapshot/ })
})
