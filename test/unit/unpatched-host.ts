// A peer as an agent without the dependency patches (protocol/patches/) would run:
// the same transport, cluster-key protector, Noise and yamux, straight from the
// libraries. It echoes every stream of /vgrid-test/echo/1 and prints its address;
// stdin closing stops it. Tests start it as a process of its own, so the patches
// installed in the test process cannot reach it.
//   node test/unit/unpatched-host.ts <cluster key hex>
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { checkedPreSharedKey } from '../../protocol/key-check.ts'
import { clusterKeyFromHex } from '../../protocol/cluster-key.ts'

const ECHO_PROTOCOL = '/vgrid-test/echo/1'

const host = await createLibp2p({
  privateKey: await generateKeyPair('Ed25519'),
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionProtector: checkedPreSharedKey(clusterKeyFromHex(process.argv[2] ?? '').psk),
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  connectionGater: { denyDialMultiaddr: () => false }
})
await host.handle(ECHO_PROTOCOL, (stream) => {
  stream.addEventListener('message', (evt) => { stream.send(evt.data) })
  stream.addEventListener('remoteCloseWrite', () => { void stream.close() })
})
console.log(host.getMultiaddrs()[0]!.toString())
process.stdin.resume()
process.stdin.on('end', () => { void (async () => { await host.stop(); process.exit(0) })() })
