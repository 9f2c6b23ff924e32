// A writer's epoch below one a store is recording (a newer writer taking over) is
// rejected: the recorded epoch's writer must not land writes meanwhile (invariant 3).
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { isGvsError } from '../../node/gvs/errors.ts'
import { silentLogger } from '../../node/log.ts'

test('an epoch below one being recorded is rejected, also one equal to the recorded epoch', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-store-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const s = new ObjectStore({ log: silentLogger }, { dir })
  await s.start()
  t.teardown(async () => { await s.stop() })
  await s.fence('v', 5)
  const newer = s.fence('v', 8) // being recorded (written and fsynced) below
  const e = await t.throwsAsync(s.write('v', 0, 0, new Uint8Array([1]), { epoch: 5 }))
  t.true(isGvsError(e, 'stale-epoch'), String(e))
  await newer
  t.is(await s.epoch('v'), 8)
  // a copy only learns: not refused
  await s.fence('v', 5, { learnOnly: true })
})
