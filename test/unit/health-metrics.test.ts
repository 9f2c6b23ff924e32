// The health gauges hold nothing of an agent once its registry is dropped: Node's
// process metrics, which observe the process for good, live in one registry a process
// (rv36: every agent a process ran was kept, through the GC observer of its registry).
import test from 'ava'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { Registry } from 'prom-client'
import { processRegistry, registerHealthMetrics } from '../../node/health-metrics.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

test('an agent\'s health sources are collected once its registry is dropped; the process metrics are one registry', async t => {
  const refs: Array<WeakRef<object>> = []
  const make = async (): Promise<void> => {
    // stands for the agent: the problems closure reaches its services
    const agent = { big: new Uint8Array(20 * 2 ** 20) }
    refs.push(new WeakRef(agent))
    const r = new Registry()
    registerHealthMetrics(r, { problems: async () => { void agent.big; return [] }, haOk: () => { throw new Error('ha check failed') }, version: 'x' })
    const text = await r.metrics()
    t.regex(text, /^vgrid_health_ok 1$/m)
    t.regex(text, /^vgrid_ha_ok 0$/m, 'an HA check that throws is not ok, and fails not the scrape')
  }
  for (let i = 0; i < 5; i++) await make()
  t.regex(await processRegistry().metrics(), /^vgrid_process_resident_memory_bytes \d+/m)
  t.is(processRegistry(), processRegistry(), 'one a process')
  for (let i = 0; i < 5; i++) { gc(); await new Promise(resolve => setTimeout(resolve, 50)) }
  t.is(refs.filter(r => r.deref() != null).length, 0)
})

test('the process CPU counters are the process\'s totals, not the CPU since the first scrape (bb36)', async t => {
  // CPU this process spent before the process metrics were first asked for
  const t0 = Date.now()
  while (Date.now() - t0 < 300) { /* busy */ }
  const spent = process.cpuUsage()
  const text = await processRegistry().metrics()
  const total = Number(/^vgrid_process_cpu_seconds_total (\S+)$/m.exec(text)?.[1])
  t.true(total >= (spent.user + spent.system) / 1e6, `${total} s counted, ${(spent.user + spent.system) / 1e6} s spent before the first scrape`)
})
