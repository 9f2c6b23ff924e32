// The dependency patches check the library internals they rely on before they go in,
// and the start fails with a message naming the patch, the package, its version and
// what is missing (protocol/patches/). Each check is fed a module shaped as a changed
// release would be, and the real modules installed here must pass.
import test from 'ava'
import { readFileSync } from 'node:fs'
import { LengthPrefixedDecoder } from '@libp2p/utils'
import { installPatches, PATCHES, PatchError, type Patch } from '../../protocol/patches/index.ts'
import { check as checkDecoder } from '../../protocol/patches/length-prefix-empty-buffer.ts'
import { check as checkYamux } from '../../protocol/patches/yamux-window-updates.ts'
import { check as checkEd25519 } from '../../protocol/patches/ed25519-key-import.ts'
import { check as checkXsalsa20 } from '../../protocol/patches/xsalsa20-detached-memory.ts'
import { packageVersion } from '../../protocol/patches/probe.ts'
import { findLiveClasses } from '../../protocol/patches/live-classes.ts'

test('every patch finds what it needs in the pinned packages, and installs', async t => {
  await findLiveClasses()
  t.is(PATCHES.length, 8)
  for (const p of PATCHES) {
    t.is(p.check(), null, p.name)
    t.regex(p.version(), /^\d+\.\d+\.\d+/, `${p.package} has a version`)
  }
  await t.notThrowsAsync(installPatches())
  await t.notThrowsAsync(installPatches(), 'installing twice is harmless')
})

test('the decoder patch notices a decoder without decode() or without lengthDecoder', t => {
  t.regex(checkDecoder({}) ?? '', /LengthPrefixedDecoder is no longer exported/)
  class NoDecode {}
  t.regex(checkDecoder({ LengthPrefixedDecoder: NoDecode }) ?? '', /has no decode\(\)/)
  // a release that renamed the field the patch wraps
  class Renamed { decodeLength = (): number => 0; decode (): void { void this.decodeLength() } }
  t.regex(checkDecoder({ LengthPrefixedDecoder: Renamed }) ?? '', /no lengthDecoder function/)
  class StillCalled { lengthDecoder = (): number => 0; decode (): void { void this.prefix() } prefix (): number { return 0 } }
  t.regex(checkDecoder({ LengthPrefixedDecoder: StillCalled }) ?? '', /decode no longer uses lengthDecoder/)
  t.is(checkDecoder({ LengthPrefixedDecoder }), null)
})

test('the yamux patch notices a changed state numbering or a renamed window field', t => {
  class Stream { state = 0; recvWindow = 0; recvWindowCapacity = 0; sendWindowUpdate (): void { if (this.state === 3) this.recvWindow = this.recvWindowCapacity } }
  t.is(checkYamux({ YamuxStream: Stream, StreamState: { Established: 3 } }), null)
  t.regex(checkYamux({ YamuxStream: Stream, StreamState: { Established: 4 } }) ?? '', /StreamState.Established is 4, not 3/)
  t.regex(checkYamux({ YamuxStream: class {}, StreamState: { Established: 3 } }) ?? '', /has no sendWindowUpdate\(\)/)
  class Renamed { state = 0; window = 0; sendWindowUpdate (): void { this.window = this.state } }
  t.regex(checkYamux({ YamuxStream: Renamed, StreamState: { Established: 3 } }) ?? '', /no longer uses recvWindow, recvWindowCapacity/)
})

test('the ed25519 patch notices a key without raw bytes or without verify()', t => {
  t.regex(checkEd25519({}) ?? '', /publicKeyFromRaw is no longer exported/)
  t.regex(checkEd25519({ publicKeyFromRaw: () => ({ type: 'Ed25519', raw: 'abc' }) }) ?? '', /no 32-byte raw field/)
  t.regex(checkEd25519({ publicKeyFromRaw: () => ({ type: 'Ed25519', raw: new Uint8Array(32) }) }) ?? '', /has no verify\(\)/)
  t.regex(checkEd25519({ publicKeyFromRaw: () => { throw new Error('bad key') } }) ?? '', /cannot be made from raw bytes: bad key/)
})

test('the xsalsa20 patch notices a cipher without its shared-memory view', t => {
  t.is(checkXsalsa20(), null, 'the real cipher has it')
  t.regex(checkXsalsa20(42) ?? '', /no longer exports the cipher factory/)
  t.regex(checkXsalsa20(() => ({})) ?? '', /no _xor/)
  t.regex(checkXsalsa20(() => ({ _xor: { update () {}, realloc () {} } })) ?? '', /no _memory view/)
  t.regex(checkXsalsa20(() => ({ _xor: { _memory: new Uint8Array(1), update () {} } })) ?? '', /has no realloc\(\)/)
})

test('installPatches fails naming the patch, the package, its version and what is missing, and installs nothing', async t => {
  let installed = 0
  const fine: Patch = { name: 'fine', package: 'ok-pkg', version: () => '1.0.0', check: () => null, install: () => { installed++ } }
  const broken: Patch = { name: 'window updates', package: '@chainsafe/libp2p-yamux', version: () => '9.0.0', check: () => 'YamuxStream.prototype has no sendWindowUpdate()', install: () => { installed++ } }
  const err = await t.throwsAsync(installPatches([fine, broken]), { instanceOf: PatchError })
  t.is(err?.patch, 'window updates')
  t.regex(err?.message ?? '', /"window updates" cannot be applied to @chainsafe\/libp2p-yamux@9\.0\.0: YamuxStream\.prototype has no sendWindowUpdate\(\)/)
  t.is(installed, 0, 'a failed check installs no patch at all')
  const noVersion: Patch = { ...broken, version: () => { throw new Error('not resolvable') } }
  t.regex((await t.throwsAsync(installPatches([noVersion])))?.message ?? '', /@chainsafe\/libp2p-yamux@unknown/)
})

test('package versions are read from the package that is really loaded', t => {
  const installed = JSON.parse(readFileSync(new URL('../../node_modules/@libp2p/utils/package.json', import.meta.url), 'utf8')) as { version: string }
  t.is(packageVersion('@libp2p/utils', import.meta.resolve('@libp2p/utils')), installed.version)
  t.is(packageVersion('no-such-package', import.meta.resolve('@libp2p/utils')), 'unknown')
})
