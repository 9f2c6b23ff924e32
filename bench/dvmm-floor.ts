// The floor under bench/dvmm.ts: what bare Automerge alone costs N replicas in one
// process to take in the changes of placing M VMs, before any sync, schema check,
// membership or placement work. Run:
//   node_modules/node/bin/node bench/dvmm-floor.ts [--agents 50] [--vms 1000]
// The changes are as few as DVMM can make them: each agent writes its share of the
// specs in one change, then all its claims in one, then all its status updates in one
// (3 x N changes). Each replica applies them to Automerge's core (the wasm document the
// Replica holds, no JS object tree), all in one batch (the cheapest way) and one change
// at a time (as they arrive). The baseline is the 10 s target of issue 14: a ratio over
// 1.00x says no implementation on this stack can meet it with every agent in one process.
// Values are stored as the document stores them (crdt/values.ts: strings as
// ImmutableStrings; plain JS strings would be collaborative text, one op a character),
// and, for comparison, each spec and lease as one JSON string (one op an entry, at the
// price of field-level merges).
import * as A from '@automerge/automerge'
import { parseArgs } from 'node:util'
import { printTable } from './cluster.ts'
import { toDoc } from '../crdt/values.ts'

const { values: args } = parseArgs({ options: { agents: { type: 'string', default: '50' }, vms: { type: 'string', default: '1000' } } })
const N = Number(args.agents)
const M = Number(args.vms)
const TARGET_MS = 10_000
const GiB = 2 ** 30

type Doc = { vms: Record<string, unknown>, leases: Record<string, unknown> }
type Shape = (v: unknown) => unknown
/** as the document holds them: objects of ImmutableStrings */
const nested: Shape = toDoc
/** one scalar per entry */
const scalar: Shape = v => new A.ImmutableString(JSON.stringify(v))
const mine = (i: number): number[] => Array.from({ length: M }, (_, v) => v).filter(v => v % N === i)

/** every change of placing M VMs on N agents, entries stored by `shape` */
function placingChanges (shape: Shape, base: A.Doc<Doc>): Uint8Array[] {
  const actors = Array.from({ length: N }, (_, i) => A.clone(base, { actor: (i + 1).toString(16).padStart(32, '0') }))
  const changes: Uint8Array[] = []
  const write = (i: number, f: (d: Doc) => void): void => {
    const after = A.change(actors[i]!, f)
    changes.push(...A.getChanges(actors[i]!, after))
    actors[i] = after
  }
  // shapes as the document holds them (crdt/schema.ts): a spec, a lease with its log
  for (let i = 0; i < N; i++) {
    write(i, d => {
      for (const v of mine(i)) d.vms[`vm-${v}`] = shape({ id: `vm-${v}`, name: `vm-${v}`, spec: { cpu: 1, memoryBytes: GiB, boot: { kind: 'command', command: ['/bin/sh', '-c', 'sleep 1'] } }, desired: 'running', driver: 'fake', restart: 'always', labels: {}, made: 1_700_000_000_000 + v, by: `node-${i}`, at: 1_700_000_000_000 })
    })
  }
  for (const status of ['claimed', 'running']) {
    for (let i = 0; i < N; i++) {
      write(i, d => {
        for (const v of mine(i)) d.leases[`vm-${v}`] = shape({ vm: `vm-${v}`, holder: `node-${i}`, epoch: 1, cpu: 1, memoryBytes: GiB, status, at: 1_700_000_000_000, made: 1_700_000_000_000 + v, log: [{ at: 1_700_000_000_000, event: 'placed', node: `node-${i}`, epoch: 1 }] })
      })
    }
  }
  return changes
}

// every replica starts from one empty document, as a grid's do from its genesis
const base = A.from<Doc>({ vms: {}, leases: {} })
const core0 = A.getBackend(A.clone(base))
/** ms for one replica to apply every change, `batch` at a time (median of 3) */
function applyMs (changes: Uint8Array[], batch: number): number {
  const runs: number[] = []
  for (let r = 0; r < 3; r++) {
    const core = core0.fork()
    const t = performance.now()
    for (let k = 0; k < changes.length; k += batch) core.applyChanges(changes.slice(k, k + batch))
    if (core.getMissingDeps().length > 0) throw new Error('changes were left unapplied (missing dependencies)')
    runs.push(performance.now() - t)
    core.free()
  }
  return runs.sort((a, b) => a - b)[1]!
}
const rows: string[][] = []
for (const [shapeName, shape] of [['as the document holds them', nested], ['each entry one JSON string', scalar]] as const) {
  const changes = placingChanges(shape, base)
  const bytes = changes.reduce((a, c) => a + c.length, 0)
  for (const [what, batch] of [['in one batch', changes.length], ['one change at a time', 1]] as const) {
    const one = applyMs(changes, batch)
    const all = one * N
    rows.push([`${N} replicas apply ${changes.length} changes (${M} VMs, ${shapeName}), ${what}`, `${(all / 1000).toFixed(1)} s`, `${TARGET_MS / 1000} s target`, `${(all / TARGET_MS).toFixed(2)}x`, `${one.toFixed(0)} ms per replica; ${(bytes / 2 ** 20).toFixed(1)} MiB of changes`])
  }
}
printTable(rows)
