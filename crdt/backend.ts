// Automerge's core (its wasm Automerge object) without the JS object tree that
// @automerge/automerge keeps beside it. That tree is rebuilt copy-on-write after every
// received message (each collection map copied whole): with 1,000 VMs and leases it
// was most of what receiving a sync message cost. The Replica reads through the core
// (getAll, keys, materialize of one object) and never needs the tree.
//
// Two things the package does not export are taken from the very module instance it
// loaded (an object from another instance would be refused): the functions that turn
// a sync state into the core's form and back, and `load` without materializing.
// If the package's layout changes, this fails at import, naming what is missing.
import * as A from '@automerge/automerge'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

/** the document's core: what A.getBackend returns */
export type Core = ReturnType<typeof A.getBackend>

/** the core's form of a sync state (freed after each use) */
export interface CoreSyncState { free: () => void }

interface LowLevel {
  Automerge: abstract new (...args: never[]) => unknown
  importSyncState: (s: A.SyncState) => CoreSyncState
  exportSyncState: (s: CoreSyncState) => A.SyncState
  load: (data: Uint8Array, opts: { actor?: string, unchecked?: boolean, allowMissingDeps?: boolean, convertImmutableStringsToText?: boolean }) => Core
}

const ENTRY_TO_WASM = '../wasm_bindgen_output/nodejs/automerge_wasm.cjs'

function lowLevel (): LowLevel {
  const entry = import.meta.resolve('@automerge/automerge')
  let api: Partial<LowLevel>
  try {
    api = createRequire(import.meta.url)(fileURLToPath(new URL(ENTRY_TO_WASM, entry))) as Partial<LowLevel>
  } catch (err) {
    throw new Error(`crdt/backend.ts: @automerge/automerge's wasm bindings are not at ${ENTRY_TO_WASM} from ${entry}: ${(err as Error).message}`)
  }
  for (const name of ['Automerge', 'importSyncState', 'exportSyncState', 'load'] as const) {
    if (typeof api[name] !== 'function') throw new Error(`crdt/backend.ts: @automerge/automerge's wasm bindings lack ${name}`)
  }
  const probe = A.init()
  const same = A.getBackend(probe) instanceof api.Automerge!
  A.free(probe)
  if (!same) throw new Error('crdt/backend.ts: the wasm bindings found are not the instance @automerge/automerge uses')
  return api as LowLevel
}

const api = lowLevel()

/** Loads a saved document into a core (no JS tree); throws if it is damaged. */
export function loadCore (data: Uint8Array, actor: string): Core {
  return prepare(api.load(data, { actor, unchecked: false, allowMissingDeps: false, convertImmutableStringsToText: false }))
}

/** The datatypes A.load registers (else an ImmutableString written would not be a string); forks inherit them. */
export function prepare (core: Core): Core {
  core.registerDatatype('counter', (n: number) => new A.Counter(n), (c: unknown) => c instanceof A.Counter ? c.value : undefined)
  core.registerDatatype('str', (s: string) => new A.ImmutableString(s), (s: unknown) => A.isImmutableString(s) ? s.toString() : undefined)
  return core
}

/** the core's form of a peer's sync state, for Core.generateSyncMessage and receiveSyncMessage */
export function syncIn (state: A.SyncState): CoreSyncState {
  return api.importSyncState(state)
}

/** back to the plain form (frees the core's) */
export function syncOut (s: CoreSyncState): A.SyncState {
  try {
    return api.exportSyncState(s)
  } finally {
    s.free()
  }
}

/**
 * A read-only document over the core as it is now, with its JS tree (the whole
 * document materialized): for the structure checks of crdt/genesis.ts, which read the
 * tree. Costs a pass over the document: only when the root or meta changed.
 */
export function treeOf<T> (core: Core): A.Doc<T> {
  const heads = core.getHeads()
  return core.materialize('/', heads, { handle: core, heads, freeze: false }) as A.Doc<T>
}
