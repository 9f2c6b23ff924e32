// Many pnet ciphers in one process must not run the shared cipher memory into its
// cap when one of them sees a large message (see protocol/patches/xsalsa20-detached-memory.ts).
import test from 'ava'
import { patch, XSalsa20 } from '../../protocol/patches/xsalsa20-detached-memory.ts'

test('large messages on one of many ciphers do not exhaust the shared memory, and output stays right', t => {
  t.is(patch.check(), null)
  patch.install()
  const key = new Uint8Array(32).fill(7)
  const ciphers = Array.from({ length: 200 }, (_, i) => XSalsa20(new Uint8Array(24).fill(i % 250), key))
  for (let round = 1; round <= 5; round++) {
    // one cipher sees a big message (memory grows), then every other one is used
    ciphers[round]!.update(new Uint8Array(round * 1024 * 1024))
    for (const c of ciphers) c.update(new Uint8Array(100))
  }
  // the cipher still decrypts what a fresh one with the same nonce encrypts
  const a = XSalsa20(new Uint8Array(24).fill(3), key)
  const b = XSalsa20(new Uint8Array(24).fill(3), key)
  const msg = new TextEncoder().encode('vgrid says hello')
  t.deepEqual(b.update(a.update(msg)), msg)
})
