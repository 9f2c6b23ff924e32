// A request through copy-on-write layers (a peer's replica request with `under`, a
// clone's reads) is held to one object's range before anything happens: no buffer of
// the asked size for a read no layer holds, no copy-up and no epoch recorded for a
// write the store then refuses.
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { Layers } from '../../node/gvs/layers.ts'
import { isGvsError } from '../../node/gvs/errors.ts'
import { silentLogger } from '../../node/log.ts'

test('layers refuse a range outside an object before reading, copying up or fencing', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-layers-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const s = new ObjectStore({ log: silentLogger }, { dir })
  await s.start()
  t.teardown(async () => { await s.stop() })
  const layers = new Layers(s)
  const size = s.objectSize
  await s.write('base', 0, 0, new Uint8Array([7]), { epoch: 1 })
  const stack = ['top', 'base']
  // 8 GiB of zeros for an object no layer holds, before: refused now
  for (const [offset, length] of [[0, 8 * 2 ** 30], [0, 2 ** 45], [size, 1], [-1, 1], [0.5, 1]]) {
    const e = await t.throwsAsync(layers.read(['top', 'nothing-here'], 3, offset!, length!))
    t.true(isGvsError(e, 'invalid'), `${offset}+${length}: ${String(e)}`)
  }
  const e = await t.throwsAsync(layers.write(stack, 0, size, new Uint8Array([1]), { epoch: 9 }))
  t.true(isGvsError(e, 'invalid'), String(e))
  const z = await t.throwsAsync(layers.zero(stack, 0, size - 1, 2, { epoch: 9 }))
  t.true(isGvsError(z, 'invalid'), String(z))
  t.false(await s.has('top', 0), 'nothing copied up')
  t.true((await s.epoch('top')) < 9, 'no epoch recorded')
  // within range all works as before
  t.deepEqual([...await layers.read(stack, 0, 0, 2)], [7, 0])
  await layers.write(stack, 0, 1, new Uint8Array([8]), { epoch: 9 })
  t.deepEqual([...await layers.read(stack, 0, 0, 2)], [7, 8])
})

test('a whole-object write over a layer below whose copy is damaged mends the object; a partial one is refused (it cannot merge)', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-layers-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const s = new ObjectStore({ log: silentLogger }, { dir, objectSize: 64 * 1024 })
  await s.start()
  t.teardown(async () => { await s.stop() })
  const layers = new Layers(s)
  await s.write('base', 2, 0, new Uint8Array(64 * 1024).fill(5), { epoch: 1 })
  // bit rot in the frozen layer's copy
  const { open } = await import('node:fs/promises')
  const fh = await open(join(dir, 'objects', 'base', '00000002'), 'r+')
  await fh.write(Buffer.from('rot'), 0, 3, 100)
  await fh.close()
  const stack = ['top', 'base']
  const partial = await t.throwsAsync(layers.write(stack, 2, 4096, new Uint8Array(4096).fill(6), { epoch: 2 }))
  t.true(isGvsError(partial, 'damaged'), String(partial))
  await layers.write(stack, 2, 0, new Uint8Array(64 * 1024).fill(7), { epoch: 2 })
  t.deepEqual([...await layers.read(stack, 2, 0, 4)], [7, 7, 7, 7])
  t.true(await s.has('top', 2))
})
