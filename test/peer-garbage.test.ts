// Every protocol a real agent serves to its peers, fed garbage by a member that holds the
// cluster key (a buggy or hostile peer: the cluster key is the only admission): nothing
// at all, random bytes, a length prefix that promises gigabytes, truncated frames, JSON
// that is not a request, and a request of the right shape with wrong values. The agent
// must stay up and keep answering, with no uncaught error in its log.
import test from 'ava'
import { readFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { byteStream } from '@libp2p/utils'
import { peerIdFromString } from '@libp2p/peer-id'
import { AgentGroup, waitFor } from './helpers/agent-process.ts'
import { startRawPeer, dialAgent } from './helpers/raw-peer.ts'
import { parseClusterKey } from '../protocol/cluster-key.ts'
import type { StatusView } from '../node/api/types.ts'

const group = new AgentGroup()
test.after.always(async () => { await group.cleanup() })

/** an unsigned LEB128 varint, as length prefixes are written */
function varint (n: number): Uint8Array {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return Uint8Array.from(out)
}
const frame = (body: Uint8Array): Uint8Array => Buffer.concat([varint(body.length), body])
const json = (v: unknown): Uint8Array => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v))

/** what a peer may send: each one stream's bytes (a frame whose length overshoots is cut short by the end of the stream) */
const GARBAGE: Array<[string, Uint8Array]> = [
  ['nothing', new Uint8Array(0)],
  ['random bytes', randomBytes(4096)],
  ['a length prefix of 2 GiB and a few bytes', Buffer.concat([varint(2 ** 31), randomBytes(64)])],
  ['a varint that never ends', new Uint8Array(64).fill(0xff)],
  ['a truncated frame', varint(1000)],
  ['a frame that is not JSON', frame(json('{not json'))],
  ['a frame of JSON null', frame(json('null'))],
  ['a frame of a JSON array', frame(json([1, 2, 3]))],
  ['a frame of a JSON string', frame(json('"hello"'))],
  ['a frame of an empty object', frame(json({}))],
  ['a request of wrong types', frame(json({ op: 'write', volume: 7, index: -1, offset: 'x', epoch: null, links: 'all', vm: {}, heads: 5 }))],
  ['a frame of deep nesting', frame(json('['.repeat(5000) + ']'.repeat(5000)))],
  ['two frames of junk', Buffer.concat([frame(randomBytes(100)), frame(randomBytes(100))])]
]

test('garbage on every peer protocol: the agent stays up, answers, and logs no uncaught error', async t => {
  const agent = await group.add({ name: 'g0' })
  const key = parseClusterKey(await readFile(join(agent.opts.dataDir, 'cluster.key'), 'utf8'))
  const peer = await startRawPeer(key)
  t.teardown(async () => await peer.stop())
  const id = (await agent.get<StatusView>('/v1/status')).node.id
  await dialAgent(peer, `${agent.listen}/p2p/${id}`)
  const agentId = peerIdFromString(id)
  // the protocols it serves, as identify told us
  let protocols: string[] = []
  await waitFor(async () => {
    protocols = (await peer.peerStore.get(agentId).catch(() => null))?.protocols.filter(p => p.startsWith('/vgrid/')) ?? []
    return protocols.length > 0
  }, 10_000, 'the agent\'s protocols from identify')
  t.log(`protocols: ${protocols.join(', ')}`)
  t.true(protocols.length >= 5, protocols.join(', '))

  let sent = 0
  const reached = new Set<string>()
  for (const protocol of protocols) {
    for (const [what, bytes] of GARBAGE) {
      const signal = AbortSignal.timeout(5000)
      try {
        const stream = await peer.dialProtocol(agentId, protocol, { signal })
        const bs = byteStream(stream)
        if (bytes.length > 0) await bs.write(bytes, { signal })
        await stream.close({ signal }).catch(() => {})
        // whatever it answers (an error, or nothing): read until it ends or a moment passes
        await bs.read({ signal: AbortSignal.timeout(500) }).catch(() => null)
        sent++
        reached.add(protocol)
      } catch (err) {
        // a stream refused or reset is a fine answer to garbage (the state sync closes the
        // connection of a peer that sends it): only the agent's survival counts; dialled
        // again, so that the next garbage reaches it
        t.log(`${protocol}, ${what}: ${(err as Error).message}`)
        if (/closed|reset/i.test((err as Error).message)) {
          await peer.hangUp(agentId).catch(() => {})
          await dialAgent(peer, `${agent.listen}/p2p/${id}`).catch(() => {})
        }
      }
    }
  }
  t.log(`sent ${sent} garbage streams`)
  t.deepEqual(protocols.filter(p => !reached.has(p)), [], 'garbage reached every protocol')
  t.true(agent.running, `the agent is still running:\n${agent.log}`)
  const after = await agent.get<StatusView>('/v1/status')
  t.is(after.node.id, id, 'and answers its API')
  // and it still serves its peers
  t.true(await peer.services.ping.ping(agentId, { signal: AbortSignal.timeout(5000) }).then(() => true, () => false), 'and answers a ping')
  t.notRegex(agent.log, /uncaught|unhandled|TypeError|RangeError|SyntaxError: .* at /i, 'no uncaught error in its log')
})
