// The state files taken away under a running agent: an immutable log (chattr +i) and
// the state directory removed. Writes are refused (503, the cause named) and logged
// while it lasts, the agent recovers by itself once it clears, and after a SIGKILL
// every acknowledged write is there.
import test from 'ava'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { AgentGroup, waitFor } from '../helpers/agent-process.ts'
import { writeKeyFile, call } from '../state-grid.ts'
import { cannotMount, chattr, Ledger, labelsOn, errorLines } from './fault-helpers.ts'

const skip = await cannotMount()
if (skip != null) console.log(`skipping the state-file fault tests: ${skip}`)
const maybe = skip == null ? test.serial : test.skip

maybe('an immutable log: writes refused as read-only and logged, recovery once it is writable, nothing acknowledged lost', async t => {
  const group = new AgentGroup()
  const keyFile = await writeKeyFile(group)
  const a = await group.add({ name: 'solo', args: ['--key', keyFile] })
  const log = join(a.opts.dataDir, 'state', 'log')
  // one teardown, in this order: the flag must go before the directory can
  t.teardown(async () => {
    await chattr('-i', log).catch(() => {})
    await group.cleanup()
  })
  const ledger = new Ledger()
  for (let i = 0; i < 10; i++) t.is(await ledger.write(a, 'solo', 'before'), 200)
  await chattr('+i', log)
  for (let i = 0; i < 10; i++) await ledger.write(a, 'solo', 'immutable')
  t.is(ledger.refused.size, 10, 'every write is refused')
  t.deepEqual([...new Set(ledger.refused.values())], [503])
  const refusal = (await call(a, 'PUT', '/v1/nodes/solo/labels/probe', { value: 'x' })).body as { error: { code: string } }
  t.is(refusal.error.code, 'read_only')
  ledger.refused.set('probe', 503)
  t.is(errorLines(a.log, /cannot save the cluster document \(read-only\)/).length, 1, 'one ERROR line')
  t.deepEqual(await labelsOn(a, 'solo'), Object.fromEntries(ledger.acked), 'refused writes were not applied')

  await chattr('-i', log)
  await waitFor(async () => await ledger.write(a, 'solo', 'recovering') === 200, 30_000, 'writes accepted again')
  for (let i = 0; i < 10; i++) t.is(await ledger.write(a, 'solo', 'after'), 200)
  t.is(await a.kill('SIGKILL'), null)
  await a.start()
  t.deepEqual(ledger.check(await labelsOn(a, 'solo')), { missing: [], present: [] })
})

maybe('the state directory removed while running: noticed and logged, re-created, nothing acknowledged lost', async t => {
  const group = new AgentGroup()
  t.teardown(async () => await group.cleanup())
  const keyFile = await writeKeyFile(group)
  const a = await group.add({ name: 'solo', args: ['--key', keyFile] })
  const ledger = new Ledger()
  for (let i = 0; i < 20; i++) t.is(await ledger.write(a, 'solo', 'before'), 200)
  await rm(join(a.opts.dataDir, 'state'), { recursive: true, force: true })
  // keep writing: whatever is acknowledged from now on must survive too
  for (let i = 0; i < 50; i++) await ledger.write(a, 'solo', 'gone')
  await waitFor(() => errorLines(a.log, /cannot save the cluster document \(dir-replaced\)/).length === 1, 10_000, 'an ERROR naming the removed directory')
  await waitFor(async () => await ledger.write(a, 'solo', 'recovering') === 200, 30_000, 'writes accepted again')
  for (let i = 0; i < 10; i++) t.is(await ledger.write(a, 'solo', 'after'), 200)
  t.regex(a.log, /saved again/)
  t.is(await a.kill('SIGKILL'), null)
  await a.start()
  t.deepEqual(ledger.check(await labelsOn(a, 'solo')), { missing: [], present: [] })
  t.log(`${ledger.acked.size} acknowledged, ${ledger.refused.size} refused`)
})
