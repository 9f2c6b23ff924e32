// A crashed VM while the document cannot be saved (the data disk full): it is restarted
// under its own lease all the same (the crash's update stays queued until the disk has
// room), and the crash rule still holds (the crashes not yet written count). In-process
// agent, fake driver, its data dir on a small tmpfs.
import test from 'ava'
import { startDvmmGrid, until, vmApi } from './grid.ts'
import { cannotMount, mountTmpfs, fillDisk, freeDisk } from '../fault/fault-helpers.ts'

const skip = await cannotMount()
const maybe = skip == null ? test.serial : test.serial.skip
if (skip != null) console.log(`skipping the DVMM full-disk test: ${skip}`)
const DVMM = { settleMs: 300, tickMs: 100, fenceTimeoutMs: 2000, takeoverMarginMs: 500 }

maybe('a VM that crashes while the data disk is full is restarted on its node, and its third crash leaves it stopped; the crashes are written once there is room', async t => {
  const disk = await mountTmpfs(t, '16m')
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: DVMM, dataRoot: disk })
  t.teardown(g.stop)
  const n = g.nodes[0]!
  const app = vmApi(t, n)
  const lease = () => n.agent.state.read().get('leases', 'db')?.value
  t.is((await app.inject({ method: 'POST', url: '/v1/vms', payload: { name: 'db', cpu: 1, memory: '1G', driver: 'process', command: ['fake:run'], restart: 'always' } })).statusCode, 201)
  await until(() => n.fake.vms.get('db')?.state === 'running' && lease()?.status === 'running', 30_000, 'db running')

  const filler = await fillDisk(disk)
  // the log's last page may still take a small write or two
  let refused = false
  for (let i = 0; i < 200 && !refused; i++) refused = await n.agent.state.write(w => { w.setLabel(n.agent.id, 'fill', String(i)) }).then(() => false, () => true)
  t.true(refused, 'the document refuses writes')
  const starts = n.fake.starts
  n.fake.vms.get('db')!.onExit!(1, null) // a crash
  await until(() => n.fake.starts === starts + 1 && n.fake.vms.get('db')?.state === 'running', 10_000, () => `db restarted with the disk full (starts ${n.fake.starts - starts}, ${n.fake.vms.get('db')?.state})`)
  t.is(lease()?.status, 'running', 'its crash is not written yet')
  t.is(lease()?.crashes, undefined)
  const shown = async (): Promise<{ state: string, reason: string | null }> => (await app.inject({ method: 'GET', url: '/v1/vms/db' })).json()
  n.fake.vms.get('db')!.onExit!(1, null) // the second: restarted after the 5 s pause
  await until(() => n.fake.starts === starts + 2 && n.fake.vms.get('db')?.state === 'running', 15_000, 'db restarted after its second crash')
  n.fake.vms.get('db')!.onExit!(1, null) // the third: the rule leaves it stopped
  await new Promise(resolve => setTimeout(resolve, 2000))
  t.is(n.fake.starts, starts + 2, 'not restarted after its third crash, the disk still full')
  t.not(n.fake.vms.get('db')?.state, 'running')
  // this node says what it knows, not what the unwritten lease still says
  t.like(await shown(), { state: 'stopped' })
  t.regex((await shown()).reason ?? '', /3 crashes within 24 h, left stopped \(not in the document yet: its write waits for room on this node's data disk\)/)

  await freeDisk(filler)
  await until(() => lease()?.status === 'stopped', 15_000, () => `db's lease stopped once there is room (${JSON.stringify(lease())})`)
  t.is(lease()?.crashes?.length, 3, 'every crash written')
  t.regex(lease()?.reason ?? '', /3 crashes within 24 h, left stopped/)
  t.is(n.fake.starts, starts + 2)
})
