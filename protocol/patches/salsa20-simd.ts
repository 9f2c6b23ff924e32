// XSalsa20 (the pnet cipher) with its Salsa20 blocks computed four at a time in
// WebAssembly SIMD: each of the 16 state words is one 128-bit vector holding that word
// of four consecutive blocks, so one pass of the 20 rounds makes 256 bytes of
// keystream. The same keystream as any XSalsa20 (64-bit block counter, little-endian
// words); tests compare it with the xsalsa20 package's and with @noble/ciphers'.
//
// The module is small enough to be written here instruction by instruction (below),
// rather than shipped as a binary of unclear origin. All ciphers share one instance
// and its memory, of fixed size: a call copies its 16 state words in, and data goes
// through in slices of at most SLICE bytes, so the memory never grows.

const SLICE = 256 * 1024
/** where data goes in the module's memory; the state words are at 0..63 */
const DATA = 256
const PAGES = Math.ceil((DATA + SLICE + 256) / 65536)

// WebAssembly opcodes used here (core and SIMD, prefix 0xfd)
const I32 = 0x7f
const V128 = 0x7b
const op = {
  block: 0x02, loop: 0x03, end: 0x0b, br: 0x0c, brIf: 0x0d,
  localGet: 0x20, localSet: 0x21, localTee: 0x22,
  i32Const: 0x41, i32LtU: 0x49, i32Add: 0x6a, i32Sub: 0x6b, i32Eqz: 0x45
}
const simd = {
  load: 0x00, load32Splat: 0x09, store: 0x0b, vconst: 0x0c, shuffle: 0x0d, i32x4Splat: 0x11,
  i32x4LtU: 0x3a, or: 0x50, xor: 0x51, i32x4Shl: 0xab, i32x4ShrU: 0xad, i32x4Add: 0xae, i32x4Sub: 0xb1
}

const uleb = (n: number): number[] => {
  const out: number[] = []
  do {
    let b = n & 0x7f
    n >>>= 7
    if (n !== 0) b |= 0x80
    out.push(b)
  } while (n !== 0)
  return out
}
const sleb = (n: number): number[] => {
  const out: number[] = []
  for (;;) {
    const b = n & 0x7f
    n >>= 7
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) { out.push(b); return out }
    out.push(b | 0x80)
  }
}
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body]
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()]
const name = (s: string): number[] => vec([...s].map(c => [c.charCodeAt(0)]))

/** a Salsa20 double round, columns then rows: x[a] ^= rotl(x[b] + x[d], r) */
const DOUBLE_ROUND: ReadonlyArray<readonly [number, number, number, number]> = [
  [4, 0, 12, 7], [8, 4, 0, 9], [12, 8, 4, 13], [0, 12, 8, 18],
  [9, 5, 1, 7], [13, 9, 5, 9], [1, 13, 9, 13], [5, 1, 13, 18],
  [14, 10, 6, 7], [2, 14, 10, 9], [6, 2, 14, 13], [10, 6, 2, 18],
  [3, 15, 11, 7], [7, 3, 15, 9], [11, 7, 3, 13], [15, 11, 7, 18],
  [1, 0, 3, 7], [2, 1, 0, 9], [3, 2, 1, 13], [0, 3, 2, 18],
  [6, 5, 4, 7], [7, 6, 5, 9], [4, 7, 6, 13], [5, 4, 7, 18],
  [11, 10, 9, 7], [8, 11, 10, 9], [9, 8, 11, 13], [10, 9, 8, 18],
  [12, 15, 14, 7], [13, 12, 15, 9], [14, 13, 12, 13], [15, 14, 13, 18]
]

// locals: params 0-3 (ptr, groups, ctrLo, ctrHi), then x0..x15, the counter lanes, scratch
const P_PTR = 0
const P_GROUPS = 1
const P_LO = 2
const P_HI = 3
const X = (i: number): number => 4 + i
const CLO = 20
const CHI = 21
const T = [22, 23, 24, 25, 26]
const ROUND = 27 // i32

/** the function body: xor(ptr, groups, ctrLo, ctrHi) xors `groups` x 256 bytes at ptr in place */
function body (): number[] {
  const c: number[] = []
  const get = (i: number): void => { c.push(op.localGet, i) }
  const set = (i: number): void => { c.push(op.localSet, i) }
  const s = (o: number, ...rest: number[]): void => { c.push(0xfd, ...uleb(o), ...rest) }
  const i32 = (n: number): void => { c.push(op.i32Const, ...sleb(n)) }
  const mem = (offset: number): number[] => [4, ...uleb(offset)] // align 16 (2^4), offset
  const splatWord = (w: number): void => { i32(0); s(simd.load32Splat, 2, ...uleb(w * 4)) }
  // x[a] ^= rotl(x[b] + x[d], r)
  const step = (a: number, b: number, d: number, r: number): void => {
    get(X(b)); get(X(d)); s(simd.i32x4Add); c.push(op.localTee, T[0]!)
    i32(r); s(simd.i32x4Shl); get(T[0]!); i32(32 - r); s(simd.i32x4ShrU); s(simd.or)
    get(X(a)); s(simd.xor); set(X(a))
  }
  const shuffle = (lanes32: number[]): number[] => lanes32.flatMap(l => [l * 4, l * 4 + 1, l * 4 + 2, l * 4 + 3])

  c.push(op.block, 0x40, op.loop, 0x40)
  // the group's counter lanes: lo + [0, 1, 2, 3], hi + 1 where lo wrapped
  get(P_LO); s(simd.i32x4Splat); s(simd.vconst, ...[0, 1, 2, 3].flatMap(n => [n, 0, 0, 0])); s(simd.i32x4Add); c.push(op.localTee, CLO)
  get(P_LO); s(simd.i32x4Splat); s(simd.i32x4LtU); set(T[0]!)
  get(P_HI); s(simd.i32x4Splat); get(T[0]!); s(simd.i32x4Sub); set(CHI)
  for (let w = 0; w < 16; w++) {
    if (w === 8) { get(CLO); set(X(8)) } else if (w === 9) { get(CHI); set(X(9)) } else { splatWord(w); set(X(w)) }
  }
  i32(10); set(ROUND)
  c.push(op.loop, 0x40)
  for (const [a, b, d, r] of DOUBLE_ROUND) step(a, b, d, r)
  get(ROUND); i32(1); c.push(op.i32Sub); c.push(op.localTee, ROUND); c.push(op.i32Eqz, op.i32Eqz, op.brIf, 0)
  c.push(op.end)
  // feed-forward
  for (let w = 0; w < 16; w++) {
    get(X(w))
    if (w === 8) get(CLO); else if (w === 9) get(CHI); else splatWord(w)
    s(simd.i32x4Add); set(X(w))
  }
  // transpose each group of four words into the four blocks, xor into the data
  for (let g = 0; g < 4; g++) {
    const [a, b, cc, d] = [X(4 * g), X(4 * g + 1), X(4 * g + 2), X(4 * g + 3)]
    get(a); get(b); s(simd.shuffle, ...shuffle([0, 4, 1, 5])); set(T[1]!)
    get(a); get(b); s(simd.shuffle, ...shuffle([2, 6, 3, 7])); set(T[2]!)
    get(cc); get(d); s(simd.shuffle, ...shuffle([0, 4, 1, 5])); set(T[3]!)
    get(cc); get(d); s(simd.shuffle, ...shuffle([2, 6, 3, 7])); set(T[4]!)
    const rows: Array<[number, number, number[]]> = [
      [T[1]!, T[3]!, [0, 1, 4, 5]], [T[1]!, T[3]!, [2, 3, 6, 7]],
      [T[2]!, T[4]!, [0, 1, 4, 5]], [T[2]!, T[4]!, [2, 3, 6, 7]]
    ]
    rows.forEach(([p, q, lanes], block) => {
      const offset = 64 * block + 16 * g
      get(P_PTR) // address for the store
      get(P_PTR); s(simd.load, ...mem(offset))
      get(p); get(q); s(simd.shuffle, ...shuffle(lanes))
      s(simd.xor); s(simd.store, ...mem(offset))
    })
  }
  // next group: 256 bytes on, counter + 4 (carrying into hi)
  get(P_PTR); i32(256); c.push(op.i32Add); set(P_PTR)
  get(P_LO); i32(4); c.push(op.i32Add); c.push(op.localTee, P_LO)
  i32(4); c.push(op.i32LtU); get(P_HI); c.push(op.i32Add); set(P_HI)
  // leave when no group is left (br_if 1 leaves the block), else round again
  get(P_GROUPS); i32(1); c.push(op.i32Sub); c.push(op.localTee, P_GROUPS)
  c.push(op.i32Eqz, op.brIf, 1, op.br, 0)
  c.push(op.end, op.end, op.end)
  return c
}

function moduleBytes (): Uint8Array {
  const fn = [...vec([[...uleb(23), V128], [...uleb(1), I32]]), ...body()]
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, ...vec([[I32], [I32], [I32], [I32]]), 0]])),
    ...section(3, vec([[0]])),
    ...section(5, vec([[0x00, ...uleb(PAGES)]])),
    ...section(7, vec([[...name('memory'), 0x02, 0], [...name('xor'), 0x00, 0]])),
    ...section(10, vec([[...uleb(fn.length), ...fn]]))
  ])
}

interface Exports { memory: { buffer: ArrayBuffer }, xor: (ptr: number, groups: number, lo: number, hi: number) => void }
// the project's type libraries leave WebAssembly out: the little used here
interface WasmApi { Module: new (bytes: Uint8Array) => object, Instance: new (m: object) => { exports: unknown } }

let wasm: { exports: Exports, bytes: Uint8Array, words: Uint32Array } | null = null

/** the shared instance, made on first use; throws where WebAssembly SIMD is missing */
function instance (): NonNullable<typeof wasm> {
  if (wasm == null) {
    const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly
    if (api == null) throw new Error('no WebAssembly here')
    const exports = new api.Instance(new api.Module(moduleBytes())).exports as Exports
    wasm = { exports, bytes: new Uint8Array(exports.memory.buffer), words: new Uint32Array(exports.memory.buffer, 0, 16) }
  }
  return wasm
}

/** whether this runtime can run the module (WebAssembly with SIMD) */
export function simdAvailable (): boolean {
  try {
    instance()
    return true
  } catch {
    return false
  }
}

const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]
const le32 = (b: Uint8Array, i: number): number => (b[i]! | b[i + 1]! << 8 | b[i + 2]! << 16 | b[i + 3]! << 24) >>> 0

/** the Salsa20 input words: sigma, key, and four words of nonce/counter in 6..9 */
function salsaState (key: Uint32Array, n: readonly number[]): Uint32Array {
  const s = new Uint32Array(16)
  s[0] = SIGMA[0]!; s[5] = SIGMA[1]!; s[10] = SIGMA[2]!; s[15] = SIGMA[3]!
  for (let i = 0; i < 4; i++) { s[1 + i] = key[i]!; s[11 + i] = key[4 + i]!; s[6 + i] = n[i]! }
  return s
}

/** HSalsa20: the subkey XSalsa20 derives from the key and the nonce's first 16 bytes */
function hsalsa20 (key: Uint8Array, nonce: Uint8Array): Uint32Array {
  const x = salsaState(Uint32Array.from({ length: 8 }, (_, i) => le32(key, 4 * i)), [0, 1, 2, 3].map(i => le32(nonce, 4 * i)))
  for (let round = 0; round < 10; round++) {
    for (const [a, b, d, r] of DOUBLE_ROUND) { const v = (x[b]! + x[d]!) | 0; x[a] = x[a]! ^ (v << r | v >>> (32 - r)) }
  }
  return Uint32Array.from([0, 5, 10, 15, 6, 7, 8, 9], i => x[i]!)
}

/**
 * One direction of an XSalsa20 stream (a 32-byte key, a 24-byte nonce). `position` is
 * the number of stream bytes already used (tests start far into a stream).
 */
export class XSalsa20Stream {
  private readonly state: Uint32Array
  private position: number

  constructor (key: Uint8Array, nonce: Uint8Array, position = 0) {
    if (key.length < 32 || nonce.length < 24) throw new Error('XSalsa20 takes a 32-byte key and a 24-byte nonce')
    const subkey = hsalsa20(key, nonce)
    this.state = salsaState(subkey, [le32(nonce, 16), le32(nonce, 20), 0, 0])
    subkey.fill(0)
    this.position = position
  }

  /** xors the next input.length bytes of keystream into output (which may be input) */
  update (input: Uint8Array, output: Uint8Array): void {
    const w = instance()
    for (let done = 0; done < input.length;) {
      const len = Math.min(SLICE, input.length - done)
      const skip = this.position % 64
      const block = Math.floor(this.position / 64)
      w.words.set(this.state)
      w.bytes.set(input.subarray(done, done + len), DATA + skip)
      w.exports.xor(DATA, Math.ceil((skip + len) / 256), block >>> 0, Math.floor(block / 2 ** 32) >>> 0)
      output.set(w.bytes.subarray(DATA + skip, DATA + skip + len), done)
      done += len
      this.position += len
    }
  }

  /** forgets the key */
  wipe (): void {
    this.state.fill(0)
    instance().words.fill(0)
  }
}
