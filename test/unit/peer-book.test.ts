// The peer book keeps members that left gracefully (marked), and the dial plan tries
// them after the others: a whole grid stopped and started again finds itself.
import test from 'ava'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerBookEntries, loadPeerBook, savePeerBook, PEER_BOOK_FILE } from '../../node/peer-book.ts'
import { planDials, type DialTarget } from '../../protocol/dialer.ts'
import type { Member, MemberState } from '../../protocol/membership.ts'
import { createLogger } from '../../node/log.ts'

const member = (nodeId: string, state: MemberState, addrs = [`/ip4/10.0.0.1/tcp/${nodeId.length}`]): Member =>
  ({ nodeId, state, since: 0, lastSeen: 0, version: [1, 1], advert: { addrs } }) as unknown as Member

test('peerBookEntries keeps left members, marked and last; skips self and members without addresses', t => {
  const members = new Map([
    ['self', member('self', 'alive')],
    ['zz', member('zz', 'left')],
    ['aa', member('aa', 'left')],
    ['m1', member('m1', 'alive')],
    ['m2', member('m2', 'dead')],
    ['m3', member('m3', 'suspect', [])]
  ])
  t.deepEqual(peerBookEntries(members, 'self').map(e => [e.id, e.state]), [['m1', 'member'], ['m2', 'member'], ['aa', 'left'], ['zz', 'left']])
})

test('a saved book reads back with its states; an old book without states reads as members', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'vgrid-book-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  const log = createLogger({ level: 'error' })
  const entries = peerBookEntries(new Map([['a', member('a', 'alive')], ['b', member('b', 'left')]]), 'self')
  await savePeerBook(dir, entries)
  t.deepEqual(await loadPeerBook(dir, log), entries)
  await writeFile(join(dir, PEER_BOOK_FILE), JSON.stringify({ peers: [{ id: 'old', addrs: ['/ip4/1.2.3.4/tcp/1'] }, { id: 7 }] }))
  t.deepEqual(await loadPeerBook(dir, log), [{ id: 'old', addrs: ['/ip4/1.2.3.4/tcp/1'], state: 'member' }])
})

test('planDials tries members that left after the others, failures first ordering within each', t => {
  const target = (key: string, extra: Partial<DialTarget> = {}): DialTarget =>
    ({ key, peerId: key, addrs: ['/ip4/1.2.3.4/tcp/1'], source: 'member', attempts: 0, nextAt: 0, ...extra })
  const targets = [target('l1', { left: true }), target('m1', { attempts: 2 }), target('l2', { left: true, attempts: 1 }), target('m2')]
  const plan = planDials({ targets, connected: new Set(), now: 0, targetPeers: 16, maxParallel: 8, random: () => 0 })
  t.deepEqual(plan.map(p => p.key), ['m2', 'm1', 'l1', 'l2'])
  // with room for two, only the running members are dialled
  t.deepEqual(planDials({ targets, connected: new Set(), now: 0, targetPeers: 2, maxParallel: 8, random: () => 0 }).map(p => p.key), ['m2', 'm1'])
  // with only left members known (a whole-grid restart), they are dialled
  t.deepEqual(planDials({ targets: targets.filter(x => x.left === true), connected: new Set(), now: 0, targetPeers: 16, maxParallel: 8 }).map(p => p.key).sort(), ['l1', 'l2'])
})
