import test from 'ava'
import { windowUpdateDue, patch } from '../../protocol/patches/yamux-window-updates.ts'
import { YamuxStream } from '@chainsafe/libp2p-yamux/stream'

const WINDOW = 256 * 1024
const ESTABLISHED = 3

test('an established stream sends a window update only once half its window is used', t => {
  t.false(windowUpdateDue({ state: ESTABLISHED, recvWindow: WINDOW, recvWindowCapacity: WINDOW - 16 }))
  t.false(windowUpdateDue({ state: ESTABLISHED, recvWindow: WINDOW, recvWindowCapacity: WINDOW / 2 + 1 }))
  t.true(windowUpdateDue({ state: ESTABLISHED, recvWindow: WINDOW, recvWindowCapacity: WINDOW / 2 }))
  t.true(windowUpdateDue({ state: ESTABLISHED, recvWindow: WINDOW, recvWindowCapacity: 0 }))
})

test('a stream that is opening, paused or closing always goes to the library (flags, epochs)', t => {
  for (const state of [0, 1, 2, 4, 5]) t.true(windowUpdateDue({ state, recvWindow: WINDOW, recvWindowCapacity: WINDOW - 16 }))
})

test('the patched stream sends no frame for a small read, and one after half the window', t => {
  patch.install()
  const frames: Array<{ type: number, length: number }> = []
  const s = Object.create(YamuxStream.prototype) as Record<string, unknown>
  Object.assign(s, {
    state: ESTABLISHED,
    recvWindow: WINDOW,
    recvWindowCapacity: WINDOW - 16,
    maxStreamWindowSize: 16 * 1024 * 1024,
    epochStart: Date.now(),
    streamId: 1,
    getRTT: () => -1,
    sendFrame: (f: { type: number, length: number }) => { frames.push(f) }
  })
  const update = (s.sendWindowUpdate as () => void).bind(s)
  update()
  t.is(frames.length, 0)
  s.recvWindowCapacity = WINDOW / 2 - 100
  update()
  t.is(frames.length, 1)
  // the update gives back everything used so far
  t.is(frames[0]!.length, WINDOW / 2 + 100)
  t.is(s.recvWindowCapacity, WINDOW)
})

test('bulk data still flows both ways over a real connection (pnet, Noise, patched yamux)', async t => {
  const { createHost } = await import('../../protocol/host.ts')
  const { generateClusterKey } = await import('../../protocol/cluster-key.ts')
  const { generateKeyPair } = await import('@libp2p/crypto/keys')
  const { byteStream } = await import('@libp2p/utils')
  const clusterKey = generateClusterKey()
  const hosts = await Promise.all([0, 1].map(async () => await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })))
  t.teardown(async () => { await Promise.all(hosts.map(async h => await h.stop())) })
  const [a, b] = hosts as [typeof hosts[0], typeof hosts[0]]
  const SIZE = 3 * 1024 * 1024 // twelve times yamux's initial window
  // the far side echoes everything back
  await b.handle('/vgrid-test/echo/1', (stream) => {
    stream.addEventListener('message', (evt) => { stream.send(evt.data) })
    stream.addEventListener('remoteCloseWrite', () => { void stream.close() })
  })
  const stream = await a.dialProtocol(b.getMultiaddrs()[0]!, '/vgrid-test/echo/1')
  const bytes = byteStream(stream)
  const data = new Uint8Array(SIZE).map((_, i) => (i * 7) & 0xff)
  const [echoed] = await Promise.all([
    bytes.read({ bytes: SIZE, signal: AbortSignal.timeout(30_000) }),
    (async () => { for (let i = 0; i < SIZE; i += 64 * 1024) await bytes.write(data.subarray(i, i + 64 * 1024)) })()
  ])
  t.is(echoed.byteLength, SIZE)
  t.deepEqual(echoed.subarray(), data)
})
