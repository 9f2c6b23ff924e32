// A VM's disk is opened as NAME~EPOCH, pinned to the writer epoch its holder fenced
// (exports.ts). When the agent restarts, QEMU reconnects asking for the same name; in a
// contested lease the document may hold the other holder's epoch by then. The pins are
// kept in <data-dir>/gvs-pins.json (pins-file.ts), so the new service opens the disk at
// the fenced epoch and its writes land; a damaged file is reported, never a crash.
import test from 'ava'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { volumeEpoch } from '../../crdt/placement/index.ts'
import { PINS_FILE } from '../../node/gvs/pins-file.ts'
import { OBJECT_SIZE } from '../../node/gvs/placement.ts'
import { GvsService } from '../../node/gvs/service.ts'
import { createLogger, silentLogger, type Logger } from '../../node/log.ts'
import { apiOf, contestedDisk, memoryHosts, sharedDocument, startServices } from './hosts.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { PIN_KEY_FILE } from '../../node/gvs/pin-keys.ts'

test('a disk pinned to a fenced epoch the document no longer holds opens after the agent restarts, and writes', async t => {
  // nodes 1 and 2 both claimed the VM at lease epoch 1; the winner fenced and runs the VM,
  // and the document kept the loser's value (fence-pinned.test.ts)
  const { dir, hosts, svcs, state, members, id, ids, w, l } = await contestedDisk(t, 'gvspinrestart')
  const block = (byte: number): Buffer => Buffer.alloc(4096, byte)
  const mine = volumeEpoch(1, 1, ids[w]!)
  await state.write(x => { x.update('volumes', id, { epoch: mine }) }, 'test: the winner takes the volume')
  await svcs[w]!.fence(id, mine)
  await state.write(x => { x.update('volumes', id, { epoch: volumeEpoch(1, 1, ids[l]!) }) }, 'test: the loser\'s value stays in the document')
  const sock = join(dir, `a${w}`, 'nbd.sock')
  const name = svcs[w]!.pinnedExportName('app/disk', mine)
  const before = await NbdClient.open(sock, name)
  await before.write(0, block(1))
  await before.flush()
  await before.close()

  // the winner's agent restarts: a new service over the same data dir and host
  const old = svcs[w]!
  await old.stop()
  svcs.splice(svcs.indexOf(old), 1)
  const again = new GvsService({ peerId: ids[w]!, log: silentLogger, config: { dataDir: join(dir, `a${w}`) }, host: hosts[w]!, state, membership: { members } }, { reconcileMs: 0, env: false })
  await again.start()
  svcs.push(again)

  const after = await NbdClient.open(sock, name)
  t.teardown(async () => { await after.close().catch(() => {}) })
  t.true((await after.read(0, 4096)).equals(block(1)), 'what the VM wrote before the restart')
  await after.write(OBJECT_SIZE, block(2))
  await after.flush()
  t.true((await after.read(OBJECT_SIZE, 4096)).equals(block(2)), 'and a write after it, at the fenced epoch')
  // an epoch this node never fenced still does not open
  await t.throwsAsync(async () => { await NbdClient.open(sock, again.pinnedExportName('app/disk', mine - 1)) })
  await after.close()

  // an upgrade from a release whose VM disks were named without a key (no key file yet):
  // their QEMU reconnects as app/disk~EPOCH, and the pins that release kept open so
  await again.stop()
  svcs.splice(svcs.indexOf(again), 1)
  await rm(join(dir, `a${w}`, PIN_KEY_FILE))
  const upgraded = new GvsService({ peerId: ids[w]!, log: silentLogger, config: { dataDir: join(dir, `a${w}`) }, host: hosts[w]!, state, membership: { members } }, { reconcileMs: 0, env: false })
  await upgraded.start()
  svcs.push(upgraded)
  const legacy = await NbdClient.open(sock, `app/disk~${mine}`)
  t.teardown(async () => { await legacy.close().catch(() => {}) })
  await legacy.write(OBJECT_SIZE, block(3))
  await legacy.flush()
  t.true((await legacy.read(OBJECT_SIZE, 4096)).equals(block(3)), 'a keyless name of a pin the earlier release made writes as the VM\'s')
})

/** a logger that keeps its lines */
const capture = (): { log: Logger, lines: string[] } => {
  const lines: string[] = []
  return { log: createLogger({ write: l => { lines.push(l) } }), lines }
}

const damaged: Array<[string, string]> = [
  ['not JSON', '{"format":1,"pins":{"vol-a'],
  ['a wrong shape', '{"format":1,"pins":["vol-aaaaaaaaaaaa"]}'],
  ['an epoch not an integer', '{"format":1,"pins":{"vol-aaaaaaaaaaaa":[1.5]}}'],
  ['an epoch a string', '{"format":1,"pins":{"vol-aaaaaaaaaaaa":["7"]}}'],
  ['another format', '{"pins":{"vol-aaaaaaaaaaaa":[7]}}']
]

for (const [what, text] of damaged) {
  test(`a damaged pins file (${what}) is reported and ignored; the next fence writes a sound one`, async t => {
    const { dir, hosts, svcs } = await memoryHosts(t, 1, `gvspinbad${damaged.findIndex(d => d[0] === what)}`)
    const { state, members } = sharedDocument(hosts)
    const file = join(dir, 'a0', PINS_FILE)
    await startServices({ dir, hosts, svcs }, { state, members })
    const created = await apiOf(svcs[0]!).inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/app/disk', size: OBJECT_SIZE } })
    const id = created.json<{ id: string }>().id
    await svcs.pop()!.stop()
    await writeFile(file, text)

    const { log, lines } = capture()
    const svc = new GvsService({ peerId: hosts[0]!.peerId.toString(), log, config: { dataDir: join(dir, 'a0') }, host: hosts[0]!, state, membership: { members } }, { reconcileMs: 0, env: false })
    await svc.start()
    svcs.push(svc)
    const warned = lines.filter(l => l.includes(' WARN ') && l.includes(file))
    t.is(warned.length, 1, lines.join('\n'))
    t.regex(warned[0]!, /damaged/)
    t.truthy(svc.device('app/disk'), 'the volume still opens')
    t.is(svc.device(svc.pinnedExportName('app/disk', 7)), undefined, 'nothing was taken from the damaged file')
    await svc.fence(id, 9)
    t.deepEqual(JSON.parse(await readFile(file, 'utf8')), { format: 1, pins: { [id]: [9] } })
  })
}
