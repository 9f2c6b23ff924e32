// What `vgrid status` says, for Prometheus: whether this node's health is ok, its problems
// by service and cause, whether the HA check passes, the agent's release, and Node's
// process metrics (memory, event-loop delay, CPU). Read at each scrape (bb32: nothing on
// /metrics could alert on what status showed).
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { HealthProblem } from './api/types.ts'

export interface HealthMetricsSource {
  /** the problems /v1/status shows */
  problems: () => Promise<HealthProblem[]>
  /** the HA check's verdict (absent: no VM manager, and no gauge) */
  haOk?: () => boolean
  version: string
}

/**
 * Node's process metrics, once a process: they observe the process (GC, the event loop)
 * and are never undone, so an agent's own registry holding them kept every agent a
 * process ever ran alive (rv36: tests and benchmarks run dozens); /metrics appends them.
 */
let processMetrics: Registry | null = null
export function processRegistry (): Registry {
  if (processMetrics == null) {
    processMetrics = new Registry()
    const before = process.cpuUsage()
    collectDefaultMetrics({ register: processMetrics, prefix: 'vgrid_' })
    // prom-client counts the CPU from here (the first scrape): the process's own before
    // it is added, so the counters are the process's totals, as Prometheus expects (bb36)
    const add = (name: string, micros: number): void => { (processMetrics!.getSingleMetric(`vgrid_${name}`) as Counter | undefined)?.inc(micros / 1e6) }
    add('process_cpu_user_seconds_total', before.user)
    add('process_cpu_system_seconds_total', before.system)
    add('process_cpu_seconds_total', before.user + before.system)
  }
  return processMetrics
}

export function registerHealthMetrics (registry: Registry, src: HealthMetricsSource): void {
  new Gauge({ name: 'vgrid_build_info', help: 'the agent\'s release (always 1)', labelNames: ['version'] as const, registers: [registry] }).set({ version: src.version }, 1)
  // one look a scrape: the registry collects its metrics at once (null: a check failed, not ok)
  let last: { at: number, p: Promise<HealthProblem[] | null> } | null = null
  const now = async (): Promise<HealthProblem[] | null> => {
    if (last == null || Date.now() - last.at > 1000) last = { at: Date.now(), p: src.problems().catch(() => null) }
    return await last.p
  }
  new Gauge({
    name: 'vgrid_health_ok',
    help: '1 while /v1/status shows no problem on this node, else 0',
    registers: [registry],
    async collect () {
      const problems = await now()
      this.set(problems?.length === 0 ? 1 : 0)
    }
  })
  new Gauge({
    name: 'vgrid_health_problems',
    help: 'the problems /v1/status shows now, by service and cause (vgrid status says what each is)',
    labelNames: ['service', 'cause'] as const,
    registers: [registry],
    async collect () {
      const problems = await now()
      this.reset()
      for (const p of problems ?? []) this.inc({ service: p.service, cause: p.cause })
    }
  })
  const haOk = src.haOk
  if (haOk != null) {
    new Gauge({
      name: 'vgrid_ha_ok',
      help: '1 while every VM could run again if any one node failed (vgrid ha), else 0; absent without a VM manager',
      registers: [registry],
      collect () {
        // a check that throws is not ok, and fails not the whole scrape (rv36)
        let ok = false
        try { ok = haOk() } catch {}
        this.set(ok ? 1 : 0)
      }
    })
  }
}
