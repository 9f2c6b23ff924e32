// A fold (layer-reclaim.ts) whose volume is removed while it copies: it stops at the
// next object instead of copying the rest into a layer being freed (each such copy
// made the layer held again; one landing during the removal failed it in CI).
import test from 'ava'
import { silentLogger } from '../../node/log.ts'
import { LayerReclaim, planMerges, type LayerReclaimComponents } from '../../node/gvs/layer-reclaim.ts'
import type { Volume } from '../../crdt/index.ts'

const volA: Volume = {
  id: 'A', path: '/v/A', sizeBytes: 1 << 26, replicas: 1, state: 'ready', parent: null, epoch: 1, at: 1, by: 'n',
  // A@2 is written; snapshot s reads A@1 then A; A's own snapshot was deleted: A folds into A@1
  layers: ['A@2', 'A@1', 'A'],
  snapshots: { s: { name: 's', createdAt: 1, layers: ['A@1', 'A'], at: 1, by: 'n' } }
} as unknown as Volume

test('a fold stops copying once its volume is gone from the document, and drops nothing', async t => {
  t.deepEqual(planMerges([volA]).map(m => [m.layer, m.into]), [['A', 'A@1']], 'the fold planned')
  let volumes: Volume[] = [volA]
  const merges: number[] = []
  let writes = 0
  const objects = new Map(Array.from({ length: 10 }, (_, i) => [i, ['n']]))
  const r = new LayerReclaim({
    self: 'n',
    log: silentLogger,
    store: { dir: '/nonexistent-gvs-test' },
    live: () => new Set(['n']),
    holders: () => ['n'],
    coordinatorOf: () => 'n',
    running: () => true,
    repairer: (_m: unknown, layer: string) => ({ inventory: async () => ({ inventory: layer === 'A' ? objects : new Map(), errors: [] }) }),
    transport: {
      call: async (_node: string, req: { index?: number }) => {
        if (req.index != null) {
          merges.push(req.index)
          // `vol rm` lands while the third object is copied
          if (merges.length === 3) volumes = []
        }
        return { reply: { present: true } }
      }
    },
    write: async () => { writes++; return true }
  } as unknown as LayerReclaimComponents)
  t.is(await r.fold(() => volumes), 0, 'nothing folded')
  t.deepEqual(merges, [0, 1, 2], 'no copy after the volume went')
  t.is(writes, 0, 'the document is not written')
})
