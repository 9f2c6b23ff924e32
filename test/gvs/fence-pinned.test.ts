// Two nodes that both believe they hold one VM's lease at one epoch (their claims met
// only after the settle window) each raise the VM's volume epoch and open its disk
// pinned to their own (crdt/placement/volume-epoch.ts, exports.ts). Whichever fences
// first, the lease winner's writes land and the loser's are refused; the document,
// which keeps only one of the two values, does not decide which epoch a disk writes with.
import test from 'ava'
import { join } from 'node:path'
import { volumeEpoch } from '../../crdt/placement/index.ts'
import { OBJECT_SIZE } from '../../node/gvs/placement.ts'
import { contestedDisk } from './hosts.ts'
import { NbdClient } from '../helpers/nbd-client.ts'

for (const first of ['loser', 'winner'] as const) {
  test(`two holders of one lease epoch: the winner's disk writes, the loser's is refused (the ${first} fences first)`, async t => {
    // nodes 1 and 2 both claimed the VM at lease epoch 1; the rule names one the winner
    const { dir, svcs, state, id, ids, w, l } = await contestedDisk(t, `gvspin${first}`)
    const block = (byte: number): Buffer => Buffer.alloc(4096, byte)
    const epochOf = (i: number): number => volumeEpoch(1, 1, ids[i]!)
    t.true(epochOf(w) > epochOf(l), 'the winner takes the greater writer epoch')
    // the document keeps one of the two values: the loser's, the worse case
    await state.write(x => { x.update('volumes', id, { epoch: epochOf(l) }) }, 'test: both take the volume; the loser\'s value stays')

    const open = async (i: number): Promise<NbdClient> => {
      const c = await NbdClient.open(join(dir, `a${i}`, 'nbd.sock'), svcs[i]!.pinnedExportName('app/disk', epochOf(i)))
      t.teardown(async () => { await c.close().catch(() => {}) })
      return c
    }
    let loser: NbdClient
    let winnerDisk: NbdClient
    if (first === 'loser') {
      await svcs[l]!.fence(id, epochOf(l))
      loser = await open(l)
      await loser.write(0, block(1))
      await loser.flush()
      await svcs[w]!.fence(id, epochOf(w))
      winnerDisk = await open(w)
    } else {
      await svcs[w]!.fence(id, epochOf(w))
      winnerDisk = await open(w)
      // the loser's fence is refused on the replicas, so its VM never starts
      await t.throwsAsync(async () => { await svcs[l]!.fence(id, epochOf(l)) }, { message: /older than|stale/ })
      // and a disk pinned to an epoch this node never fenced, nor the volume's current, does not open
      await t.throwsAsync(async () => { await NbdClient.open(join(dir, `a${l}`, 'nbd.sock'), svcs[l]!.pinnedExportName('app/disk', epochOf(l) - 1)) })
      loser = await open(l)
    }
    await winnerDisk.write(OBJECT_SIZE, block(2))
    await winnerDisk.flush()
    await t.throwsAsync(async () => { await loser.write(2 * OBJECT_SIZE, block(9)) }, undefined, 'the loser is refused on an object the winner never wrote')
    await t.throwsAsync(async () => { await loser.write(OBJECT_SIZE, block(9)) }, undefined, 'and on one it wrote')
    t.true((await winnerDisk.read(OBJECT_SIZE, 4096)).equals(block(2)))
    t.true((await winnerDisk.read(2 * OBJECT_SIZE, 4096)).equals(block(0)), 'the refused write left nothing behind')
    if (first === 'loser') t.true((await winnerDisk.read(0, 4096)).equals(block(1)), 'what the loser wrote before the winner fenced stays')
  })
}
