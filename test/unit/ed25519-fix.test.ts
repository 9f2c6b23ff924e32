// Ed25519 verification with cached key imports must still tell good signatures from
// bad ones, for every key, including keys pushed out of the cache (protocol/patches/ed25519-key-import.ts).
import test from 'ava'
import { generateKeyPair, publicKeyFromRaw } from '@libp2p/crypto/keys'
import { Uint8ArrayList } from 'uint8arraylist'
import { ed25519KeyObject, patch } from '../../protocol/patches/ed25519-key-import.ts'

const patchEd25519Verify = (): void => { patch.install() }

test('patched verify accepts good signatures and refuses tampered data, other keys and bad sizes', async t => {
  patchEd25519Verify()
  const a = await generateKeyPair('Ed25519')
  const b = await generateKeyPair('Ed25519')
  const msg = new TextEncoder().encode('an advert')
  const sig = await a.sign(msg)
  // a fresh key object from the raw bytes, as gossipsub gets one from a peer id
  const pub = publicKeyFromRaw(a.publicKey.raw)
  t.true(await pub.verify(msg, sig))
  t.true(await pub.verify(new Uint8ArrayList(msg.subarray(0, 3), msg.subarray(3)), sig), 'a list of chunks is verified as one message')
  t.false(await pub.verify(new TextEncoder().encode('an advert!'), sig))
  t.false(await publicKeyFromRaw(b.publicKey.raw).verify(msg, sig))
  const flipped = Uint8Array.from(sig)
  flipped[0]! ^= 1
  t.false(await pub.verify(msg, flipped))
  t.throws(() => pub.verify(msg, sig.subarray(0, 63)), { instanceOf: TypeError })
  t.is(ed25519KeyObject(a.publicKey.raw), ed25519KeyObject(Uint8Array.from(a.publicKey.raw)), 'one import per key')
})

test('keys beyond the cache are imported again and still verify', async t => {
  patchEd25519Verify()
  const first = await generateKeyPair('Ed25519')
  const msg = new Uint8Array([1, 2, 3])
  const sig = await first.sign(msg)
  const before = ed25519KeyObject(first.publicKey.raw)
  // fill the cache with other real keys
  for (let i = 0; i < 4100; i++) ed25519KeyObject((await generateKeyPair('Ed25519')).publicKey.raw)
  t.not(ed25519KeyObject(first.publicKey.raw), before, 'the oldest key was evicted and imported again')
  t.true(await publicKeyFromRaw(first.publicKey.raw).verify(msg, sig))
})
