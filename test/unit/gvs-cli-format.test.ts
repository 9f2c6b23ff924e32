// What `vgrid vol info` prints of a volume's repairs (node/gvs/cli-format.ts), and the
// peer ids of replicas' errors said as node names (node/gvs/volumes.ts sayNodes).
import test from 'ava'
import { bytesText, progressLine, repairLine, scrubLine } from '../../node/gvs/cli-format.ts'
import { sayNodes } from '../../node/gvs/volumes.ts'

const id = '12D3KooWEqDtFz8rAbTbUqbbZyH7X2HR7ptRQqVqvDyk6GwDo9Cd'
const names = (n: string): string => n === id ? 'a3' : n

test('the progress line names the node copying, and goes once there is nothing to copy', t => {
  t.is(progressLine({ node: id, startedAt: 0, done: 2, total: 5, bytes: 8 * 2 ** 20, failed: 1 }, names), 'progress  2/5 copies, 8 MiB, 1 failed (on a3)')
  t.is(progressLine({ node: id, startedAt: 0, done: 0, total: 0, bytes: 0, failed: 0 }, names), null, 'a pass over a healthy volume')
  t.is(progressLine(null, names), null)
})

test('byte counts carry their unit', t => {
  t.is(bytesText(0), '0 B')
  t.is(bytesText(512), '512 B')
  t.is(bytesText(4 * 2 ** 20), '4 MiB')
  t.is(bytesText(1.5 * 2 ** 30), '1.5 GiB')
})

test('peer ids in messages are said as node names', t => {
  t.is(sayNodes(`NBD requests failed: replica ${id}: object 7 of volume "/k/v" is damaged`, names), 'NBD requests failed: replica a3: object 7 of volume "/k/v" is damaged')
  t.is(sayNodes('no id here', names), 'no id here')
})

test('the scrub line says the last repair with scrub too, not only this node\'s scheduled scrub', t => {
  const last = { node: id, at: Date.parse('2026-12-03T10:00:05Z'), copied: 0, failed: 0, bytes: 0, lost: 0, scrubbedAt: Date.parse('2026-12-03T10:00:00Z') }
  t.is(scrubLine(null, last, names), '2026-12-03T10:00:00.000Z: every copy checked by vol repair --scrub on a3; this node\'s scheduled scrub has checked none of its copies yet')
  t.is(scrubLine(null, { ...last, scrubbedAt: undefined }, names), 'this node\'s scheduled scrub has checked none of its copies yet')
  t.is(scrubLine({ at: '2026-12-03T11:00:00.000Z', objects: 4, bad: 0, repaired: 0 }, last, names), '2026-12-03T11:00:00.000Z: 4 objects here checked by this node\'s scheduled scrub, 0 bad, 0 rewritten; before that, 2026-12-03T10:00:00.000Z: every copy checked by vol repair --scrub on a3')
})

test('the last repair\'s line gives its bytes a unit', t => {
  t.is(repairLine({ node: id, at: Date.parse('2026-12-03T10:00:00Z'), copied: 0, failed: 0, bytes: 0, lost: 0 }, names), 'repair    2026-12-03T10:00:00.000Z on a3: 0 copied (0 B), 0 failed')
  t.is(repairLine({ node: id, at: Date.parse('2026-12-03T10:00:00Z'), copied: 3, failed: 1, bytes: 12 * 2 ** 20, lost: 2 }, names), 'repair    2026-12-03T10:00:00.000Z on a3: 3 copied (12 MiB), 1 failed, 2 lost')
  t.is(repairLine(null, names), 'repair    none yet')
  // a node without a majority: the record is with the coordinator on the other side (bb16 read "none yet" there)
  t.is(repairLine(null, names, 'this node sees 1 of the grid\'s 4 members (no majority)'), 'repair    not known here (this node sees no majority: the last repair\'s record is with its coordinator)')
})
