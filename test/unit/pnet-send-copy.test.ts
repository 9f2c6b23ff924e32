// pnet's sendData enciphering each piece in place of one buffer
// (protocol/patches/pnet-send-copy.ts) must put on the wire exactly what the library
// does, send after send, with the library's cipher and with the SIMD one.
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { check, patch, sendWithoutCopy } from '../../protocol/patches/pnet-send-copy.ts'
import { findLiveClasses } from '../../protocol/patches/live-classes.ts'
import { patch as simdPatch } from '../../protocol/patches/xsalsa20-simd.ts'
import { XSalsa20 } from '../../protocol/patches/xsalsa20-detached-memory.ts'

type Send = (this: unknown, data: unknown) => { sentBytes: number, canSendMore: boolean }
// the library's own, taken before anything is patched in this process
const box = (await findLiveClasses()).box
const librarySend = (box as { sendData: Send }).sendData

/** a sender as BoxMessageStream is one: its outbound cipher and the connection under it */
function sender (nonce: Uint8Array, key: Uint8Array): { self: object, wire: Uint8Array[] } {
  const wire: Uint8Array[] = []
  return { self: { outboundXor: XSalsa20(nonce, key), maConn: { send: (b: Uint8Array) => { wire.push(Uint8Array.from(b)); return true } } }, wire }
}

/** Noise-like sends: lists of a 2-byte length, a body and a tag, some pieces empty, and plain arrays */
function sends (): Array<Uint8Array | Uint8ArrayList> {
  const out: Array<Uint8Array | Uint8ArrayList> = []
  for (let i = 0; i < 40; i++) {
    const body = randomBytes((i * 7919) % 70_000)
    out.push(i % 5 === 4 ? randomBytes(i * 13) : new Uint8ArrayList(randomBytes(2), body, new Uint8Array(0), randomBytes(16)))
  }
  return out
}

function compare (t: import('ava').ExecutionContext, label: string): void {
  const key = randomBytes(32)
  const nonce = randomBytes(24)
  const lib = sender(nonce, key)
  const ours = sender(nonce, key)
  for (const d of sends()) {
    const a = librarySend.call(lib.self, d)
    const b = sendWithoutCopy.call(ours.self as never, d as never)
    t.deepEqual(b, a, `${label}: the same result`)
  }
  t.is(ours.wire.length, lib.wire.length)
  t.true(Buffer.concat(ours.wire).equals(Buffer.concat(lib.wire)), `${label}: the same bytes on the wire`)
}

test('the patch finds what it relies on in the installed library', t => {
  t.is(typeof box, 'object', String(box))
  t.is(check(), null)
  t.is(check({}), 'BoxMessageStream.prototype has no sendData()')
  t.regex(check({ sendData () {} }) ?? '', /sendData no longer uses outboundXor, maConn/)
  t.regex(check(null) ?? '', /not looked for/)
  t.is(patch.package, '@libp2p/pnet')
})

test('the same bytes on the wire as the library, with its cipher and then with the SIMD one', t => {
  compare(t, 'library cipher')
  simdPatch.install()
  compare(t, 'SIMD cipher')
})
