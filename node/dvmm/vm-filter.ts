// `GET /v1/vms?state=&node=&app=&label=K=V` and `vgrid vm ls --state --node --app
// --label`: the VMs a script asks about, not every VM for it to sift (bb49). Pure.
import { ValidationError } from '../errors.ts'
import type { VmRow } from './vms.ts'

/** every state a VM's row can show (vms.ts vmRow, and `unknown` where its node is out of sight) */
export const VM_STATES = ['pending', 'starting', 'running', 'stopping', 'stopped', 'failed', 'paused', 'unknown'] as const

export interface VmFilter {
  state?: string
  /** its holder, by name or id (the API resolves a short id or name to the id first) */
  node?: string
  app?: string
  /** labels the VM has, each with this value */
  labels?: Record<string, string>
}

export const VM_FILTER_QUERY = ['state', 'node', 'app', 'label'] as const

/** the filter a query asks for; a bad value is a 400 naming it */
export function vmFilterOf (query: unknown): VmFilter {
  const q = (query ?? {}) as Record<string, unknown>
  const one = (k: string): string | undefined => {
    const v = q[k]
    if (v === undefined) return undefined
    if (typeof v !== 'string' || v === '') throw new ValidationError(k, `${k} must be given once, not empty`)
    return v
  }
  const f: VmFilter = {}
  const state = one('state')
  if (state != null) {
    if (!(VM_STATES as readonly string[]).includes(state)) throw new ValidationError('state', `state ${JSON.stringify(state.slice(0, 64))} is none of ${VM_STATES.join(', ')}`)
    f.state = state
  }
  const node = one('node')
  if (node != null) f.node = node
  const app = one('app')
  if (app != null) f.app = app
  const raw = q.label
  if (raw !== undefined) {
    const list = Array.isArray(raw) ? raw : [raw]
    f.labels = Object.create(null) as Record<string, string>
    for (const p of list) {
      const i = typeof p === 'string' ? p.indexOf('=') : -1
      if (i <= 0) throw new ValidationError('label', `label ${JSON.stringify(String(p).slice(0, 64))} is not KEY=VALUE`)
      const k = (p as string).slice(0, i)
      const v = (p as string).slice(i + 1)
      if (Object.hasOwn(f.labels, k) && f.labels[k] !== v) throw new ValidationError('label', `label ${k} is given twice, as ${JSON.stringify(f.labels[k])} and ${JSON.stringify(v)}: a VM has one value of it`)
      f.labels[k] = v
    }
  }
  return f
}

/** whether a VM's row (and its own labels) is one the filter asks for */
export function keepsVm (f: VmFilter, row: Pick<VmRow, 'state' | 'node' | 'nodeId' | 'app'>, labels: Readonly<Record<string, string>> | undefined): boolean {
  if (f.state != null && row.state !== f.state) return false
  if (f.node != null && row.node !== f.node && row.nodeId !== f.node) return false
  if (f.app != null && row.app !== f.app) return false
  for (const [k, v] of Object.entries(f.labels ?? {})) if (labels == null || !Object.hasOwn(labels, k) || labels[k] !== v) return false
  return true
}

/** the query string of a filter, for the CLI (`?state=running&label=k%3Dv`; '' when none) */
export function vmFilterQuery (f: VmFilter): string {
  const parts = [
    ...(['state', 'node', 'app'] as const).filter(k => f[k] != null).map(k => `${k}=${encodeURIComponent(f[k]!)}`),
    ...Object.entries(f.labels ?? {}).map(([k, v]) => `label=${encodeURIComponent(`${k}=${v}`)}`)
  ]
  return parts.length === 0 ? '' : `?${parts.join('&')}`
}
