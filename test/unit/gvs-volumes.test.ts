import test from 'ava'
import { planCreate, planResize, planRename, checkDestroy, findVolume, checkSize, checkPath } from '../../node/gvs/volumes.ts'
import { validateObject, type Volume, type Vm } from '../../crdt/index.ts'

const G = 2 ** 30
const pool = { nodes: 3, freeBytes: 100 * G }
const stamp = { at: 1, by: 'node1' }
const vol = (over: Partial<Volume> = {}): Volume => ({ id: 'vol-a', path: '/shop/db/data', sizeBytes: 10 * G, replicas: 2, state: 'ready', parent: null, snapshots: {}, ...stamp, ...over })

test('create: defaults, a valid document object', t => {
  const d = planCreate({ path: '/shop/web/root', size: '4G' }, [vol()], pool, () => 'vol-new')
  t.like(d, { id: 'vol-new', path: '/shop/web/root', sizeBytes: 4 * G, replicas: 2, minReplicas: 2, thin: true, epoch: 1 })
  t.is(validateObject('volumes', 'vol-new', { ...d, ...stamp }), null)
  t.is(planCreate({ path: '/a', size: 512 }, [], { nodes: 1, freeBytes: G }).replicas, 1, 'R defaults to at most the node count')
})

test('create: bad input gets a clear error naming the field', t => {
  const e = (req: object, p = pool): string => {
    try { planCreate(req, [vol()], p); return 'accepted' } catch (err) { return `${(err as Error).name}: ${(err as Error).message}` }
  }
  t.regex(e({ path: 'shop/db', size: '1G' }), /ValidationError: path "shop\/db" is not a volume path/)
  t.regex(e({ path: '/shop/../x', size: '1G' }), /"\." or "\.\." segment/)
  t.regex(e({ path: '/x', size: 0 }), /must be a positive whole number/)
  t.regex(e({ path: '/x', size: -5 }), /must be a positive whole number/)
  t.regex(e({ path: '/x', size: 1000 }), /not a multiple of 512/)
  t.regex(e({ path: '/x', size: 'lots' }), /is not a size/)
  t.regex(e({ path: '/x' }), /size is required/)
  t.regex(e({ path: '/x', size: '60G' }), /more than the pool's/)
  t.regex(e({ path: '/x', size: '1G', replicas: 4 }), /more than the 3 live node/)
  t.regex(e({ path: '/x', size: '1G', replicas: 2, minReplicas: 3 }), /minReplicas 3 must be/)
  t.regex(e({ path: '/x', size: '1G', thin: 'yes' }), /thin must be true or false/)
  t.regex(e({ path: '/shop/db/data', size: '1G' }), /ConflictError: a volume already has the path/)
})

test('resize grows only; rename keeps paths unique; destroy refuses a volume in use', t => {
  t.is(planResize(vol(), '20G', pool), 20 * G)
  t.throws(() => planResize(vol(), '5G', pool), { message: /shrinking to .* is refused/ })
  t.throws(() => planResize(vol(), '100G', pool), { message: /more than the pool's/ })
  t.is(planRename(vol(), '/shop/db/data2', [vol()]), '/shop/db/data2')
  t.throws(() => planRename(vol(), '/b', [vol(), vol({ id: 'vol-b', path: '/b' })]), { message: /already has the path "\/b"/ })
  const vm = { id: 'db', name: 'db', app: null, desired: 'running', spec: { driver: 'qemu', cpu: 1, memoryBytes: G, volumes: ['vol-a'], constraints: {} }, ...stamp } as Vm
  t.throws(() => checkDestroy(vol(), [vm]), { message: /in use by VM "db"/ })
  t.notThrows(() => checkDestroy(vol(), [{ ...vm, desired: 'stopped' }]))
  t.is(findVolume([vol()], '/shop/db/data').id, 'vol-a')
  t.throws(() => findVolume([vol()], '/nope'), { message: /no volume with id or path/ })
  t.is(checkSize(4096), 4096)
  t.is(checkPath('/a/b-c/d.e_f'), '/a/b-c/d.e_f')
  // a path of an id's shape could name another volume (export names are paths without "/", or ids)
  t.throws(() => checkPath('/vol-0123456789ab'), { message: /has the shape of a volume id/ })
  t.throws(() => planRename(vol(), '/vol-0123456789ab', [vol()]), { message: /has the shape of a volume id/ })
  t.is(checkPath('/vol-0123456789ab/data'), '/vol-0123456789ab/data')
  t.is(checkPath('/vol-0123'), '/vol-0123')
})
