// The node's health names volumes whose NBD requests failed lately (io-failures.ts):
// one problem for them all, each export with its count and last failure, gone once
// none failed for the window.
import test from 'ava'
import { IoFailures } from '../../node/gvs/io-failures.ts'

test('failures show for the window after the last one, counted per export, at most five named', t => {
  let now = 1_000_000
  const f = new IoFailures(60_000, () => now)
  t.deepEqual(f.problems(), [])
  f.failed('shop/db', 'write', 'object 3: 1 live node(s) can hold it, the volume needs at least 2')
  now += 1000
  f.failed('shop/db', 'flush', 'replica x unreachable')
  const [p] = f.problems()
  t.like(p, { service: 'gvs', cause: 'volume-io-failing', since: new Date(1_000_000).toISOString() })
  t.regex(p!.message, /1 volume\(s\) failed in the last 60 s: \/shop\/db: 2 failed since .*, the last a flush at 1970-01-01T00:16:41\.000Z: replica x unreachable/)
  for (let i = 0; i < 7; i++) f.failed(`v${i}`, 'write', 'disk full')
  t.regex(f.problems()[0]!.message, /8 volume\(s\) .*; and 3 more$/)
  now += 61_000
  t.deepEqual(f.problems(), [], 'none failed for the window: healthy again')
})

test('a request of the kind that failed succeeding ends the problem for that export; one of another kind does not', t => {
  const f = new IoFailures(60_000, () => 1_000_000)
  f.failed('shop/db', 'write', 'this node sees 1 of the grid\'s 3 members (no majority)')
  f.succeeded('shop/db', 'read')
  t.is(f.problems().length, 1, 'reads work, writes may still fail')
  f.succeeded('shop/db', 'write')
  t.deepEqual(f.problems(), [], 'a write went through: the cause passed')
})
