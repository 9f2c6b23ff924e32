// The classes of two libraries that export no way to reach them, found by making one
// instance of each through their public API: pnet's BoxMessageStream (what
// preSharedKey().protect() returns) and Noise's EncryptedMessageStream (the `conn` of
// a secured connection). A pnet exchange and a Noise handshake run between two ends of
// an in-memory connection pair, with throw-away keys, once per process (a few ms).
//
// Why not import their files: the packages export only their entry points, and a
// file imported by its path is a second copy of the module wherever the code is
// bundled (scripts/build.ts), so a patch would change a class nobody uses. The
// instances made here come from the very copy the host uses.
import { multiaddrConnectionPair } from '@libp2p/utils'
import { preSharedKey, generateKey } from '@libp2p/pnet'
import { noise } from '@chainsafe/libp2p-noise'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { MessageStream } from '@libp2p/interface'

export interface LiveClasses {
  /** pnet's BoxMessageStream.prototype, or why it could not be made */
  box: object | string
  /** Noise's EncryptedMessageStream.prototype, or why it could not be made */
  encrypted: object | string
}

let found: LiveClasses | null = null
let finding: Promise<LiveClasses> | null = null

/** The prototypes, made on the first call; later calls give the same answer. */
export async function findLiveClasses (): Promise<LiveClasses> {
  finding ??= Promise.all([boxPrototype(), encryptedPrototype()]).then(([box, encrypted]) => {
    found = { box, encrypted }
    return found
  })
  return await finding
}

/** What findLiveClasses found, or null before it ran (patches check this synchronously). */
export const liveClasses = (): LiveClasses | null => found

const close = (streams: MessageStream[]): void => { for (const s of streams) s.abort(new Error('probe done')) }
const reason = (what: string, err: unknown): string => `${what} could not be made through the public API: ${(err as Error).message}`

async function boxPrototype (): Promise<object | string> {
  const [a, b] = multiaddrConnectionPair()
  try {
    const psk = new Uint8Array(95)
    generateKey(psk)
    const signal = AbortSignal.timeout(5000)
    const boxed = await Promise.all([preSharedKey({ psk })().protect(a, { signal }), preSharedKey({ psk })().protect(b, { signal })])
    close(boxed)
    return Object.getPrototypeOf(boxed[0]) as object
  } catch (err) {
    return reason('a pnet connection', err)
  } finally {
    close([a, b])
  }
}

async function encryptedPrototype (): Promise<object | string> {
  const [a, b] = multiaddrConnectionPair()
  try {
    const upgrader = { getStreamMuxers: () => new Map() }
    const silent = Object.assign(() => {}, { error () {}, trace () {}, enabled: false })
    const logger = { forComponent: () => silent }
    const end = async () => {
      const privateKey = await generateKeyPair('Ed25519')
      return { key: privateKey, encrypter: noise()({ privateKey, peerId: peerIdFromPrivateKey(privateKey), logger, upgrader } as never) }
    }
    const [out, inb] = await Promise.all([end(), end()])
    const signal = AbortSignal.timeout(5000)
    const [secured] = await Promise.all([
      out.encrypter.secureOutbound(a, { remotePeer: peerIdFromPrivateKey(inb.key), signal }),
      inb.encrypter.secureInbound(b, { signal })
    ])
    close([secured.connection])
    return Object.getPrototypeOf(secured.connection) as object
  } catch (err) {
    return reason('a Noise session', err)
  } finally {
    close([a, b])
  }
}
