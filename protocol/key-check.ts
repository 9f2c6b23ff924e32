// A connection protector: @libp2p/pnet's pre-shared-key encryption, followed by a
// short known-plaintext exchange inside the encrypted pipe. With the wrong key the
// plaintext comes out as noise, so the handshake fails here with a named reason
// (counted as "bad-key") instead of as an opaque error later in the upgrade.
import { preSharedKey } from '@libp2p/pnet'
import { byteStream } from '@libp2p/utils'
import type { AbortOptions, ConnectionProtector, MessageStream } from '@libp2p/interface'

const MAGIC = new TextEncoder().encode('vgrid/pnet/1\n')

export class ClusterKeyMismatchError extends Error {
  override name = 'ClusterKeyMismatchError'
}

export interface KeyCheckEvents {
  onRejected?: (reason: 'bad-key' | 'handshake') => void
}

class CheckedProtector implements ConnectionProtector {
  private readonly inner: ConnectionProtector
  private readonly events: KeyCheckEvents
  constructor (inner: ConnectionProtector, events: KeyCheckEvents) {
    this.inner = inner
    this.events = events
  }

  async protect (connection: MessageStream, options?: AbortOptions): Promise<MessageStream> {
    const opts = options ?? { signal: AbortSignal.timeout(2000) }
    let boxed: MessageStream
    try {
      boxed = await this.inner.protect(connection, opts)
    } catch (err) {
      this.events.onRejected?.('handshake')
      throw err
    }
    const bytes = byteStream(boxed)
    let theirs
    try {
      [theirs] = await Promise.all([
        bytes.read({ bytes: MAGIC.length, ...opts }),
        bytes.write(MAGIC, opts)
      ])
    } catch (err) {
      this.events.onRejected?.('handshake')
      throw err
    }
    const got = theirs.subarray()
    if (got.length !== MAGIC.length || !got.every((b, i) => b === MAGIC[i])) {
      this.events.onRejected?.('bad-key')
      const err = new ClusterKeyMismatchError('peer does not hold this cluster key')
      connection.abort(err)
      throw err
    }
    return bytes.unwrap()
  }
}

export function checkedPreSharedKey (psk: Uint8Array, events: KeyCheckEvents = {}): () => ConnectionProtector {
  const make = preSharedKey({ psk })
  return () => new CheckedProtector(make(), events)
}
