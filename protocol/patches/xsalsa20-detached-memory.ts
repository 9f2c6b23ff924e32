// Symptom: with a few dozen pnet connections, one large message kills the agent
// ("WebAssembly.Memory.grow(): Maximum memory size exceeded" thrown inside libp2p's
// event dispatch).
//
// Cause, in xsalsa20 (the cipher under @libp2p/pnet), index.js, WASM.prototype.update
// and WASM.prototype.realloc: all instances share one WebAssembly memory and each keeps
// a view of it. When one instance grows that memory, every other view is detached
// (length 0), and the next update through it "grows" the memory again by the whole size
// instead of just refreshing the view, until the memory reaches its 64 MiB cap.
// The patch refreshes a detached view first (realloc on an empty view grows by 0).
//
// Upstream: libp2p/js-libp2p#3585 ("fix(pnet): bound xsalsa20 wasm memory per message
// and per connection", merged) fixes the same crash inside @libp2p/pnet by feeding the
// cipher in bounded chunks; once a pinned @libp2p/pnet carries it, this patch can go.
// xsalsa20 itself (unmaintained since 2019) has no issue for it.
import { createRequire } from 'node:module'
import { missingMethods, packageVersion, type Patch } from './probe.ts'

interface WasmXor { _memory: Uint8Array, realloc: (size: number) => void, update: (i: Uint8Array, o: Uint8Array) => void }

/** An xsalsa20 cipher as the library returns it (the wrapper around the WASM state). */
export interface XSalsa20Cipher { _xor: WasmXor, update: (input: Uint8Array) => Uint8Array, finalize?: () => void }
export type XSalsa20Factory = (nonce: Uint8Array, key: Uint8Array) => XSalsa20Cipher

const require = createRequire(import.meta.url)
// resolve xsalsa20 as @libp2p/pnet does, so the patched copy is the one it uses
const pnetDir = require.resolve('@libp2p/pnet').replace(/dist[/\\]src[/\\]index\.js$/, '')
const pnetRequire = createRequire(pnetDir + 'package.json')
/** The xsalsa20 factory that @libp2p/pnet uses. */
export const XSalsa20 = pnetRequire('xsalsa20') as XSalsa20Factory

/** What the patch needs of the cipher and is missing in `factory`'s, or null. */
export function check (factory: unknown = XSalsa20): string | null {
  if (typeof factory !== 'function') return 'the module no longer exports the cipher factory'
  let probe: Partial<XSalsa20Cipher>
  try {
    probe = (factory as XSalsa20Factory)(new Uint8Array(24), new Uint8Array(32))
  } catch (err) {
    return `a cipher cannot be made: ${(err as Error).message}`
  }
  // without WebAssembly the library uses its pure-JS cipher, which shares no memory
  if (!('WebAssembly' in globalThis)) return null
  const xor = probe._xor
  if (xor == null || typeof xor !== 'object') return 'a cipher has no _xor (its WASM state)'
  if (!(xor._memory instanceof Uint8Array)) return 'the WASM state has no _memory view'
  const missing = missingMethods('the WASM state', xor, ['realloc', 'update'])
  // every cipher holds a slot of the shared memory until finalized
  if (typeof probe.finalize === 'function') probe.finalize()
  return missing
}

let patched = false

function install (): void {
  if (patched) return
  const probe = XSalsa20(new Uint8Array(24), new Uint8Array(32))
  if (!('WebAssembly' in globalThis)) return
  const proto = Object.getPrototypeOf(probe._xor) as WasmXor
  probe.finalize?.()
  const update = proto.update
  proto.update = function (this: WasmXor, input: Uint8Array, output: Uint8Array): void {
    if (this._memory.length === 0) this.realloc(0)
    update.call(this, input, output)
  }
  patched = true
}

export const patch: Patch = {
  name: 'xsalsa20 detached memory',
  package: 'xsalsa20',
  version: () => packageVersion('xsalsa20', pnetRequire.resolve('xsalsa20')),
  // once installed, the library's own function is wrapped: it was checked before
  check: () => patched ? null : check(),
  install
}
