// What a peer's changes did to the document, judged before the Replica takes them:
// the objects they touched (from Automerge's patches), each checked against the
// schema, and the document's skeleton when the root or meta changed.
import type * as A from '@automerge/automerge'
import { structureProblem, type Lineage } from './genesis.ts'
import { isKind, validateObject } from './schema.ts'
import { Reader } from './reader.ts'
import { objectValues, schemaOf, type RawDoc } from './values.ts'
import { treeOf, type Core } from './backend.ts'

export interface Checked {
  /** null when every touched object is valid */
  problem: string | null
  /** the root or meta changed */
  root: boolean
  touched: Map<string, Set<string>>
  /** each touched object's values (plain), all valid; empty when not validated (a newer schema) */
  checked: Map<string, Map<string, unknown[]>>
}

/** What incoming patches touched in `core`, and what they did wrong to it. */
export function checkPatches (core: Core, lineage: Lineage, patches: A.Patch[]): Checked {
  let root = false
  const touched = new Map<string, Set<string>>()
  const checked = new Map<string, Map<string, unknown[]>>()
  for (const { path } of patches) {
    const [kind, key] = path
    if (path.length < 2 || kind === 'meta') {
      root = true
      continue
    }
    if (typeof kind !== 'string' || typeof key !== 'string') return { problem: `unexpected path ${JSON.stringify(path)}`, root, touched, checked }
    let s = touched.get(kind)
    if (s == null) touched.set(kind, s = new Set())
    s.add(key)
  }
  const fail = (problem: string): Checked => ({ problem, root, touched, checked })
  if (root) {
    const bad = structureProblem(treeOf<RawDoc>(core), lineage)
    if (bad != null) return fail(bad)
  }
  // a newer schema may have changed what objects look like: let readers judge
  if (schemaOf(core) > lineage.target) return { problem: null, root, touched, checked }
  for (const [kind, keys] of touched) {
    if (!isKind(kind)) return fail(`unknown collection "${kind}"`)
    const collId = lineage.objectIds.get(kind)!.id
    const byKey = new Map<string, unknown[]>()
    checked.set(kind, byKey)
    for (const key of keys) {
      const values = objectValues(core, collId, kind, key)
      for (const v of values) {
        const bad = validateObject(kind, key, v)
        if (bad != null) return fail(`${kind}/${key}: ${bad}`)
      }
      byKey.set(key, values)
    }
  }
  return { problem: null, root, touched, checked }
}

/** What is wrong with a whole document offered by a peer (null: its skeleton and every object are valid). */
export function checkWhole (core: Core, lineage: Lineage): string | null {
  let problem = structureProblem(treeOf<RawDoc>(core), lineage)
  if (problem == null && schemaOf(core) <= lineage.target) {
    const check = new Reader(core, lineage.objectIds, (kind, key, bad) => { problem ??= `${kind}/${key}: ${bad}` })
    check.counts()
  }
  return problem
}
