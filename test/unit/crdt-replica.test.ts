import test from 'ava'
import * as A from '@automerge/automerge'
import { Replica, syncPair, InvalidObjectError, NotFoundError, SchemaNewerError, MIGRATIONS, type Draft } from '../../crdt/index.ts'

// Tests may build hostile or foreign documents with raw Automerge; the product may not.
const CLUSTER = 'c0ffee'
const N1 = '12D3KooWNodeOne'
const N2 = '12D3KooWNodeTwo'

let clock = 1_000_000
const replica = (nodeId: string, actor?: string, now?: () => number): Replica =>
  Replica.create({ clusterId: CLUSTER, nodeId, actor, now: now ?? (() => clock++) })

const vm = (id: string, extra: Partial<Draft<'vms'>> = {}): Draft<'vms'> => ({
  id, name: id, app: null, desired: 'running',
  spec: { driver: 'process', cpu: 1, memoryBytes: 1 << 20, volumes: [], constraints: {} },
  ...extra
})

test('two fresh replicas share one genesis: same heads, nothing to exchange but heads', t => {
  const a = replica(N1)
  const b = replica(N2)
  t.deepEqual(a.heads(), b.heads())
  t.not(a.actor, b.actor)
  const r = syncPair(a, b)
  t.is(r.rejected, undefined)
  t.is(a.read().counts().vms, 0)
})

test('writes on both sides converge to identical heads and content', t => {
  const a = replica(N1)
  const b = replica(N2)
  for (let i = 0; i < 20; i++) {
    a.change(w => w.put('vms', vm(`a-${i}`)))
    b.change(w => w.setLabel(N2, `k${i}`, `v${i}`))
  }
  t.is(syncPair(a, b).rejected, undefined)
  t.deepEqual(a.heads().sort(), b.heads().sort())
  t.is(a.read().digest(), b.read().digest())
  t.is(b.read().counts().vms, 20)
  t.is(a.read().labelsOf(N2).k7, 'v7')
})

test('a contested label resolves by latest-write, even where Automerge itself would show the other value', t => {
  // actor ff.. beats 11.. in Automerge's own ordering (equal counters); b writes later
  const a = replica(N1, 'ff'.repeat(16), () => 5000)
  const b = replica(N2, '11'.repeat(16), () => 6000)
  a.change(w => w.setLabel(N1, 'zone', 'from-a'))
  b.change(w => w.setLabel(N1, 'zone', 'from-b'))
  syncPair(a, b)
  for (const r of [a, b]) {
    const got = r.read().label(N1, 'zone')!
    t.is(got.value.value, 'from-b')
    t.is(got.rule, 'latest-write')
    t.true(got.contested)
    t.is(r.read().counts().contested, 1)
  }
  // a later write settles the contest
  a.change(w => w.setLabel(N1, 'zone', 'settled'))
  syncPair(a, b)
  t.is(b.read().label(N1, 'zone')?.contested, false)
  t.is(b.read().labelsOf(N1).zone, 'settled')
})

test('a set concurrent with an unset survives; an unset of what was seen removes it everywhere', t => {
  const a = replica(N1)
  const b = replica(N2)
  a.change(w => w.setLabel(N1, 'x', '1'))
  syncPair(a, b)
  a.change(w => w.removeLabel(N1, 'x'))
  b.change(w => w.setLabel(N1, 'x', '2'))
  syncPair(a, b)
  t.is(a.read().labelsOf(N1).x, '2')
  t.true(b.change(w => w.removeLabel(N1, 'x')).result)
  syncPair(a, b)
  t.deepEqual(a.read().labelsOf(N1), {})
  t.false(a.change(w => w.removeLabel(N1, 'x')).result)
})

test('field-level updates of different fields both survive', t => {
  const a = replica(N1)
  const b = replica(N2)
  a.change(w => w.put('vms', vm('v1')))
  syncPair(a, b)
  a.change(w => w.update('vms', 'v1', { desired: 'stopped' }))
  b.change(w => w.update('vms', 'v1', { name: 'renamed' }))
  syncPair(a, b)
  const v = a.read().get('vms', 'v1')!.value
  t.is(v.desired, 'stopped')
  t.is(v.name, 'renamed')
  t.is(a.read().digest(), b.read().digest())
})

test('concurrent snapshots of one volume both survive', t => {
  const a = replica(N1)
  const b = replica(N2)
  a.change(w => w.put('volumes', { id: 'db', path: '/apps/db', sizeBytes: 10, replicas: 2, state: 'ready', parent: null, snapshots: {} }))
  syncPair(a, b)
  a.change(w => w.addSnapshot('db', { name: 's1', createdAt: 1 }))
  b.change(w => w.addSnapshot('db', { name: 's2', createdAt: 2 }))
  syncPair(a, b)
  t.deepEqual(Object.keys(b.read().get('volumes', 'db')!.value.snapshots).sort(), ['s1', 's2'])
})

test('lease claims settle by highest epoch, then smallest holder', t => {
  const a = replica(N1)
  const b = replica(N2)
  a.change(w => w.put('leases', { vm: 'v1', holder: N1, epoch: 4, cpu: 1, memoryBytes: 1 }))
  b.change(w => w.put('leases', { vm: 'v1', holder: N2, epoch: 4, cpu: 1, memoryBytes: 1 }))
  syncPair(a, b)
  const l = b.read().get('leases', 'v1')!
  t.is(l.value.holder, N1 < N2 ? N1 : N2)
  t.is(l.rule, 'highest-epoch')
})

test('writers refuse invalid objects, and nothing is written', t => {
  const a = replica(N1)
  const heads = a.heads()
  t.throws(() => a.change(w => w.put('vms', vm('bad id!'))), { instanceOf: InvalidObjectError })
  t.throws(() => a.change(w => w.setLabel(N1, '-bad', 'x')), { instanceOf: InvalidObjectError })
  t.throws(() => a.change(w => w.setLabel(N1, 'ok', 'line\nbreak')), { instanceOf: InvalidObjectError })
  t.throws(() => a.change(w => w.update('vms', 'nope', { desired: 'stopped' })), { instanceOf: NotFoundError })
  t.deepEqual(a.heads(), heads)
})

/** A peer that writes with raw Automerge, starting from our own genesis. */
function foreign (from: Replica, fn: (d: Record<string, Record<string, unknown>>) => void): Replica {
  const doc = A.change(A.load<Record<string, Record<string, unknown>>>(from.save(), { actor: 'ab'.repeat(16) }), fn)
  return Replica.load({ clusterId: CLUSTER, nodeId: N2 }, A.save(doc))
}

test('a sync message carrying a change that fails the schema is refused whole; the document is untouched', t => {
  const a = replica(N1)
  a.change(w => w.setLabel(N1, 'keep', 'me'))
  const heads = a.heads()
  const digest = a.read().digest()
  const bad = foreign(a, d => {
    d.nodeLabels![`${N1}/good`] = { node: new A.ImmutableString(N1), key: new A.ImmutableString('good'), value: new A.ImmutableString('x'), at: 1, by: new A.ImmutableString(N2) }
    d.vms!.evil = { id: new A.ImmutableString('evil'), cpu: 'lots' }
  })
  const r = syncPair(a, bad)
  t.is(r.rejected?.ok, false)
  t.like(r.rejected, { reason: 'schema' })
  t.regex((r.rejected as { detail: string }).detail, /vms\/evil/)
  t.deepEqual(a.heads(), heads)
  t.is(a.read().digest(), digest)
  t.is(a.read().labelsOf(N1).good, undefined, 'the valid part of the refused message is not kept either')
})

test('a fresh replica takes a whole document at once, checks all of it, then syncs as usual', t => {
  const a = replica(N1)
  for (let i = 0; i < 50; i++) a.change(w => w.put('vms', vm(`v${i}`)))
  const fresh = replica(N2)
  t.is(syncPair(a, fresh).rejected, undefined)
  t.deepEqual(fresh.heads(), a.heads())
  t.is(fresh.read().digest(), a.read().digest())
  a.change(w => w.update('vms', 'v1', { desired: 'stopped' }))
  fresh.change(w => w.setLabel(N2, 'after', 'load'))
  t.is(syncPair(a, fresh).rejected, undefined)
  t.is(fresh.read().get('vms', 'v1')?.value.desired, 'stopped')
  t.is(a.read().labelsOf(N2).after, 'load')

  // the same path refuses a whole document holding one invalid object
  const bad = foreign(a, d => { d.vms!.evil = { id: new A.ImmutableString('evil') } })
  const victim = replica(N1)
  const r = syncPair(bad, victim)
  t.like(r.rejected, { ok: false, reason: 'schema' })
  t.is(victim.read().counts().vms, 0)
})

test('replacing a collection or adding an unknown top-level key is refused', t => {
  const a = replica(N1)
  for (const fn of [
    (d: Record<string, Record<string, unknown>>) => { d.vms = {} },
    (d: Record<string, Record<string, unknown>>) => { d.junk = {} },
    (d: Record<string, Record<string, unknown>>) => { delete d.leases },
    (d: Record<string, Record<string, unknown>>) => { d.meta!.cluster = new A.ImmutableString('other') }
  ]) {
    const r = syncPair(a, foreign(a, fn))
    t.like(r.rejected, { ok: false, reason: 'schema' })
  }
  t.is(a.structureProblem(), null)
})

test('garbage sync messages are refused as malformed', t => {
  const a = replica(N1)
  const p = a.newPeer()
  for (const g of [new Uint8Array(0), new Uint8Array([0x42, 0x43, 1, 2, 3]), new Uint8Array(64).fill(7)]) {
    t.like(a.receive(p, g), { ok: false, reason: 'malformed' })
  }
})

test('readers skip invalid values with a warning and keep the valid ones', t => {
  const seen: string[] = []
  const a = replica(N1)
  // data written outside the writers (an older or buggy agent), loaded from disk
  const doc = A.change(A.load<Record<string, Record<string, unknown>>>(a.save()), d => {
    d.vms!.broken = { id: new A.ImmutableString('broken') }
    d.vms!.fine = { ...vm('fine'), at: 1, by: N1 } as unknown as Record<string, unknown>
  })
  const loaded = Replica.load({ clusterId: CLUSTER, nodeId: N1, onInvalid: (k, key, p) => seen.push(`${k}/${key}: ${p}`) }, A.save(doc))
  t.deepEqual(loaded.read().list('vms').map(v => v.id), ['fine'])
  t.is(loaded.read().counts().invalid, 1)
  t.regex(seen[0] ?? '', /vms\/broken/)
})

test('save, load and incremental saves round-trip', t => {
  const a = replica(N1)
  a.change(w => w.setLabel(N1, 'a', '1'))
  const snap = a.save()
  const h = a.heads()
  a.change(w => w.setLabel(N1, 'b', '2'))
  const inc = a.saveSince(h)
  const b = Replica.load({ clusterId: CLUSTER, nodeId: N1 }, snap)
  b.loadIncremental(inc)
  b.loadIncremental(inc) // replaying a record twice is harmless
  t.deepEqual(b.heads(), a.heads())
  t.deepEqual(b.read().labelsOf(N1), { a: '1', b: '2' })
  // Automerge skips data it cannot parse (the store's checksums catch damage first)
  try { b.loadIncremental(new Uint8Array([1, 2, 3, 4])) } catch {}
  t.deepEqual(b.heads(), a.heads(), 'a damaged record leaves the document as it was')
  t.throws(() => Replica.load({ clusterId: CLUSTER, nodeId: N1 }, snap.slice(0, snap.length - 5)))
})

test('a document of another cluster is recognised', t => {
  const other = Replica.create({ clusterId: 'other', nodeId: N1 })
  const loaded = Replica.load({ clusterId: CLUSTER, nodeId: N1 }, other.save())
  t.regex(loaded.structureProblem() ?? '', /belongs to cluster other/)
})

test('migrations are deterministic: agents that migrate on their own make the same change', t => {
  const migrations = [...MIGRATIONS, { to: 3, adds: ['catalog'] }]
  const a = replica(N1)
  const b = replica(N2)
  a.change(w => w.setLabel(N1, 'x', '1'))
  b.change(w => w.setLabel(N2, 'y', '1'))
  // the same agents after an upgrade
  const a2 = Replica.load({ clusterId: CLUSTER, nodeId: N1, migrations }, a.save())
  const b2 = Replica.load({ clusterId: CLUSTER, nodeId: N2, migrations }, b.save())
  t.deepEqual(a2.migrate(), [3])
  t.deepEqual(b2.migrate(), [3])
  t.is(a2.schema, 3)
  t.is(syncPair(a2, b2).rejected, undefined)
  t.deepEqual(a2.heads().sort(), b2.heads().sort())
  t.is(a2.structureProblem(), null)
  t.is(a2.stats().changes, 5, 'genesis, the roll migration, two labels, and one migration change (not two)')
  // an agent that has not been upgraded accepts the newer document but will not write to it
  t.is(syncPair(a, a2).rejected, undefined)
  t.true(a.schemaNewer)
  t.throws(() => a.change(w => w.setLabel(N1, 'z', '1')), { instanceOf: SchemaNewerError })
})

test('per-peer sync state stays bounded over a long session', t => {
  const a = replica(N1)
  const b = replica(N2)
  const pa = a.newPeer()
  const pb = b.newPeer()
  for (let i = 0; i < 300; i++) {
    a.change(w => w.setLabel(N1, `k${i}`, 'v'))
    for (let r = 0; r < 5; r++) {
      const m1 = a.generate(pa)
      if (m1 != null) b.receive(pb, m1)
      const m2 = b.generate(pb)
      if (m2 != null) a.receive(pa, m2)
      if (m1 == null && m2 == null) break
    }
  }
  t.true(A.encodeSyncState(pa.state).byteLength < 1024)
  t.deepEqual(a.heads(), b.heads())
})
