// Agents with the stream-cipher patches (protocol/patches/: Noise session keys, pnet's
// XSalsa20) must still talk to agents without them, byte for byte, both ways: an
// unpatched peer (test/unit/unpatched-host.ts, a process of its own) echoes what a
// patched host (createHost) sends over TCP | pnet | Noise | yamux.
import test from 'ava'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost } from '../../protocol/host.ts'
import { generateClusterKey, keyHex } from '../../protocol/cluster-key.ts'

const ECHO = '/vgrid-test/echo/1'

test('a patched host and an unpatched peer exchange 8 MiB intact, both ways', async t => {
  const clusterKey = generateClusterKey()
  const peer = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', new URL('unpatched-host.ts', import.meta.url).pathname, keyHex(clusterKey)], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(async () => {
    if (peer.exitCode == null) { peer.stdin.end(); await once(peer, 'exit') }
  })
  const [addr] = await once(createInterface({ input: peer.stdout }), 'line') as [string]
  const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
  t.teardown(async () => { await host.stop() })

  const stream = await host.dialProtocol(multiaddr(addr), ECHO)
  const SIZE = 8 * 1024 * 1024
  const data = randomBytes(SIZE)
  const got: Uint8Array[] = []
  let received = 0
  const echoed = new Promise<void>((resolve, reject) => {
    stream.addEventListener('message', (e) => {
      for (const b of e.data instanceof Uint8Array ? [e.data] : e.data) { got.push(b); received += b.byteLength }
      if (received >= SIZE) resolve()
    })
    stream.addEventListener('close', (e) => { reject(e.error ?? new Error(`closed after ${received} bytes`)) })
  })
  // uneven writes: Noise messages and cipher blocks fall at odd offsets
  for (let i = 0, n = 1; i < SIZE; i += n, n = (n * 7 + 1013) % 150_000) {
    if (!stream.send(data.subarray(i, i + n))) await stream.onDrain()
  }
  await echoed
  t.is(received, SIZE)
  t.true(Buffer.concat(got).equals(data))
  await stream.close()
})
