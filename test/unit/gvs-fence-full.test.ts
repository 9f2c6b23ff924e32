// A writer's fence that a holder refuses for its full disk fails as `no-space` (an NBD
// client gets ENOSPC, as for a write the disk refuses), naming the node; bb33's plain
// export got EIO from the same full disk when its claim's fence came first.
import test from 'ava'
import type { Volume } from '../../crdt/index.ts'
import { WriterEpochs } from '../../node/gvs/writer-epochs.ts'
import { GvsError, isGvsError } from '../../node/gvs/errors.ts'
import { silentLogger } from '../../node/log.ts'
import { errnoOf } from '../../node/gvs/nbd/protocol.ts'

const vol = { id: 'vol-a', path: '/t/full', sizeBytes: 1, replicas: 2, snapshots: {} } as unknown as Volume

function epochs (fail: (node: string) => Error | null): WriterEpochs {
  return new WriterEpochs({
    self: 'a',
    log: silentLogger,
    transport: { self: 'a', call: async node => { const e = fail(node); if (e != null) throw e; return { reply: { ok: true }, data: null } } },
    outOfReachWhy: () => null,
    volumes: () => [vol],
    liveNodes: () => ['a', 'b'],
    nameOf: n => n === 'b' ? 'host4' : n,
    write: async () => { throw new Error('not in this test') },
    pin: async () => {},
    retryMs: 0
  })
}

test('a fence refused for a full disk fails as no-space (ENOSPC), naming the node', async t => {
  const e = await t.throwsAsync(epochs(n => n === 'b' ? new GvsError('no-space', 'recording epoch 7 of "vol-a": disk full (ENOSPC)') : null).fenceLive('vol-a', 7))
  t.true(isGvsError(e, 'no-space'), String(e))
  t.regex(e!.message, /could not fence volume \/t\/full at writer epoch 7 on host4: recording epoch 7 .*disk full/)
  t.is(errnoOf(e), 28)
})

test('one refused otherwise is no no-space', async t => {
  const e = await t.throwsAsync(epochs(n => n === 'b' ? new GvsError('io', 'the disk failed') : null).fenceLive('vol-a', 7))
  t.false(isGvsError(e, 'no-space'))
})

test('a newer writer\'s refusal beside a full disk is no no-space: the refusal is what the writer must hear (rv38)', async t => {
  const e = await t.throwsAsync(epochs(n => n === 'b' ? new GvsError('no-space', 'disk full') : new GvsError('stale-epoch', 'writer epoch 7 is older than 9')).fenceLive('vol-a', 7))
  t.false(isGvsError(e, 'no-space'), String(e))
})
