// One request, one answer, over a libp2p stream of its own: a length-prefixed JSON
// request and a length-prefixed JSON answer, both bounded. For the small questions
// agents ask each other (a VM's console on its holder, a volume's state); bulk data has protocols of
// its own (state sync, GVS replication).
import { lpStream } from '@libp2p/utils'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Connection, Libp2p, Stream } from '@libp2p/interface'

export type RequestHost = Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol' | 'peerId'>

const encode = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v))
const decode = (b: { subarray: () => Uint8Array }): unknown => JSON.parse(new TextDecoder().decode(b.subarray()))

/** Asks `peer`; the answer is whatever JSON it sent (the caller checks its shape). */
export async function request (host: RequestHost, peer: string, protocol: string, body: unknown, opts: { timeoutMs?: number, maxAnswerBytes?: number } = {}): Promise<unknown> {
  const signal = AbortSignal.timeout(opts.timeoutMs ?? 5000)
  const stream = await host.dialProtocol(peerIdFromString(peer), protocol, { signal })
  try {
    const lp = lpStream(stream, { maxDataLength: opts.maxAnswerBytes ?? 1024 * 1024 })
    await lp.write(encode(body), { signal })
    const answer = decode(await lp.read({ signal }))
    await stream.close({ signal }).catch(() => {})
    return answer
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

/**
 * Answers `protocol` with `answer(request, asker's peer id)`. A request that is not JSON, too big, or
 * that `answer` throws on gets `{error: message}`: the asker learns why, this side logs nothing.
 */
export async function serve (host: RequestHost, protocol: string, answer: (req: unknown, from: string) => Promise<unknown>, opts: { maxRequestBytes?: number, maxInboundStreams?: number } = {}): Promise<void> {
  await host.handle(protocol, (stream: Stream, connection: Connection) => {
    void (async () => {
      const signal = AbortSignal.timeout(10_000)
      try {
        const lp = lpStream(stream, { maxDataLength: opts.maxRequestBytes ?? 64 * 1024 })
        let out: unknown
        try { out = await answer(decode(await lp.read({ signal })), connection.remotePeer.toString()) } catch (err) { out = { error: (err as Error).message } }
        await lp.write(encode(out), { signal })
        await stream.close({ signal })
      } catch (err) {
        stream.abort(err as Error)
      }
    })()
  }, { maxInboundStreams: opts.maxInboundStreams ?? 16, maxOutboundStreams: 64 })
}
