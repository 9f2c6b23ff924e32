// A lease update's reason is kept within the schema's bound (crdt/schema.ts): a driver's
// long error (a 3000-character missing path) once made the whole update fail, the crash
// rule with it, and the VM was started again on every step for ever (rv21).
import test from 'ava'
import { logged, LEASE_REASON_MAX } from '../../node/dvmm/history.ts'
import { validateObject } from '../../crdt/schema.ts'
import type { Lease } from '../../crdt/index.ts'

test('a reason past the bound is cut, and the lease it makes is valid; a short one is kept as it is', t => {
  const cur: Lease = { vm: 'v', holder: 'n1', epoch: 1, cpu: 1, memoryBytes: 2 ** 30, status: 'claimed', at: 1, by: 'n1' }
  const long = `start failed: spawn /${'x'.repeat(3000)} ENOENT`
  const patch = logged(cur, { status: 'failed', reason: long, crashes: [1, 2, 3] }, 5)
  t.is(patch.reason!.length, LEASE_REASON_MAX)
  t.true(patch.reason!.startsWith('start failed: spawn /xxx'))
  t.true(patch.reason!.endsWith('...'))
  t.is(validateObject('leases', 'v', { ...cur, ...patch }), null)
  t.is(logged(cur, { reason: 'exited' }, 5).reason, 'exited')
})
