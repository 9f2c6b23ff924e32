// A fix for xsalsa20 (the cipher under @libp2p/pnet). All its instances share one
// WebAssembly memory, and each keeps a view of it. When one instance grows that
// memory (a large message), every other view is detached (length 0), and the next
// update through it "grows" the memory again by the whole size instead of just
// refreshing the view. With a few dozen connections the memory runs into its 64 MiB
// cap and the cipher throws inside libp2p's event dispatch, which kills the process.
// The patch refreshes a detached view first (realloc on an empty view grows by 0).
import { createRequire } from 'node:module'

interface WasmXor { _memory: Uint8Array, realloc: (size: number) => void, update: (i: Uint8Array, o: Uint8Array) => void }

/** An xsalsa20 cipher as the library returns it (the wrapper around the WASM state). */
export interface XSalsa20Cipher { _xor: WasmXor, update: (input: Uint8Array) => Uint8Array }

const require = createRequire(import.meta.url)
// resolve xsalsa20 as @libp2p/pnet does, so the patched copy is the one it uses
const pnetDir = require.resolve('@libp2p/pnet').replace(/dist[/\\]src[/\\]index\.js$/, '')
/** The xsalsa20 factory that @libp2p/pnet uses. */
export const XSalsa20 = createRequire(pnetDir + 'package.json')('xsalsa20') as (nonce: Uint8Array, key: Uint8Array) => XSalsa20Cipher

let patched = false

export function patchXsalsa20 (): boolean {
  if (patched) return true
  const probe = XSalsa20(new Uint8Array(24), new Uint8Array(32))
  const proto = Object.getPrototypeOf(probe._xor) as WasmXor
  // the pure-JS fallback (no WebAssembly) has no shared memory and needs nothing
  if (typeof proto.realloc !== 'function' || !('_memory' in probe._xor)) return false
  const update = proto.update
  proto.update = function (this: WasmXor, input: Uint8Array, output: Uint8Array): void {
    if (this._memory.length === 0) this.realloc(0)
    update.call(this, input, output)
  }
  patched = true
  return true
}

patchXsalsa20()
