// A full disk under a stream of writes: every write is either acknowledged and kept
// everywhere (through a SIGKILL and a restart), or refused with a 503 and applied
// nowhere. A graceful stop on a full disk says so and keeps what was acknowledged.
import test from 'ava'
import { AgentGroup, freePort, waitFor } from '../helpers/agent-process.ts'
import { writeKeyFile, waitMembers, waitConverged, call } from '../state-grid.ts'
import { cannotMount, mountTmpfs, fillDisk, freeDisk, Ledger, labelsOn, errorLines } from './fault-helpers.ts'

const skip = await cannotMount()
if (skip != null) console.log(`skipping the disk-full fault tests: ${skip}`)
const maybe = skip == null ? test.serial : test.skip

maybe('disk full during a write stream, then freed, then SIGKILL: acknowledged everywhere, refused nowhere', async t => {
  const group = new AgentGroup()
  t.teardown(async () => await group.cleanup())
  const disk = await mountTmpfs(t, '8m')
  const keyFile = await writeKeyFile(group)
  const port = await freePort()
  const a = await group.add({ name: 'full', dataDir: disk, p2pPort: port, args: ['--key', keyFile] })
  const b = await group.add({ name: 'peer', args: ['--key', keyFile, '--join', `/ip4/127.0.0.1/tcp/${port}`] })
  await waitMembers([a, b], 2)
  const ledger = new Ledger()

  // some writes on a healthy disk
  for (let i = 0; i < 20; i++) t.is(await ledger.write(a, 'full', 'before'), 200)
  // fill the disk and keep writing from 4 clients until 30 writes were refused
  const filler = await fillDisk(disk)
  let stop = false
  const writer = async (): Promise<void> => { while (!stop && ledger.refused.size < 30) await ledger.write(a, 'full', 'full') }
  await Promise.all(Array.from({ length: 4 }, writer))
  stop = true
  t.true(ledger.refused.size >= 30)
  t.deepEqual([...new Set(ledger.refused.values())], [503], 'refused writes are answered 503')
  const state = (await call(a, 'GET', '/v1/state')).body as { persistence: { health: { ok: boolean, cause?: string } } }
  t.like(state.persistence.health, { ok: false, cause: 'disk-full' })
  const refusal = (await call(a, 'PUT', '/v1/nodes/full/labels/probe', { value: 'x' })).body as { error: { code: string, message: string } }
  t.is(refusal.error.code, 'disk_full')
  ledger.refused.set('probe', 503)
  t.true(errorLines(a.log, /disk-full/).length >= 1, 'an ERROR line names the cause')

  // space comes back: the agent recovers by itself
  await freeDisk(filler)
  await waitFor(async () => await ledger.write(a, 'full', 'recovering') === 200, 30_000, 'writes accepted again')
  for (let i = 0; i < 50; i++) t.is(await ledger.write(a, 'full', 'after'), 200)
  t.true(errorLines(a.log, /cannot save the cluster document/).length <= 3, 'one ERROR per episode, not one per write')
  t.regex(a.log, /saved again/)

  // a crash, a restart: everything acknowledged is there, on both agents
  t.is(await a.kill('SIGKILL'), null)
  await a.start()
  await waitMembers([a, b], 2)
  await waitConverged([a, b], 30_000)
  for (const x of [a, b]) {
    const { missing, present } = ledger.check(await labelsOn(x, 'full'))
    t.deepEqual(missing, [], `${x.opts.name}: every acknowledged write is there`)
    t.deepEqual(present, [], `${x.opts.name}: no refused write is there`)
  }
  t.log(`${ledger.acked.size} acknowledged, ${ledger.refused.size} refused, ${ledger.unknown.size} unknown`)
  t.notRegex(a.log, /is damaged/, 'no torn record was left behind')
})

maybe('SIGTERM with the disk full exits non-zero with an ERROR; after a restart with space everything acknowledged is there', async t => {
  const group = new AgentGroup()
  t.teardown(async () => await group.cleanup())
  const disk = await mountTmpfs(t, '8m')
  const keyFile = await writeKeyFile(group)
  const a = await group.add({ name: 'solo', dataDir: disk, args: ['--key', keyFile] })
  const ledger = new Ledger()
  for (let i = 0; i < 30; i++) t.is(await ledger.write(a, 'solo', 'k'), 200)
  const filler = await fillDisk(disk)
  const code = await a.kill('SIGTERM')
  t.not(code, 0, 'the agent exits non-zero')
  t.true(errorLines(a.log, /could not save the cluster document at stop: .*ENOSPC/).length >= 1, 'an ERROR at stop names the cause')
  t.is(errorLines(a.log, /cannot save the cluster document \(disk-full\)/).length, 0, 'the stop reports its own failure, once')
  await freeDisk(filler)
  await a.start()
  const { missing } = ledger.check(await labelsOn(a, 'solo'))
  t.deepEqual(missing, [], 'every acknowledged write survived the failed stop')
  t.notRegex(a.log.split('agent stopped').at(-1) ?? '', /is damaged/)
})
