// Every protocol a real agent serves to its peers, fed garbage by a member that holds the
// cluster key (a buggy or hostile peer: the cluster key is the only admission): nothing
// at all, random bytes, a length prefix that promises gigabytes, truncated frames, JSON
// that is not a request, and a request of the right shape with wrong values. The agent
// must stay up and keep answering, with no uncaught error in its log.
import test, { type ExecutionContext } from 'ava'
import { readFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { byteStream } from '@libp2p/utils'
import { peerIdFromString } from '@libp2p/peer-id'
import { existsSync } from 'node:fs'
import { AgentGroup, waitFor, type AgentProcess } from './helpers/agent-process.ts'
import { FrameReader, encodeFrame } from '../node/gvs/replica-frames.ts'
import { REPLICA_PROTOCOL } from '../node/gvs/replica-protocol.ts'
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

/** a real agent, and a raw peer of its grid connected to it */
async function agentAndPeer (t: ExecutionContext, name: string): Promise<{ agent: AgentProcess, peer: Awaited<ReturnType<typeof startRawPeer>>, id: string }> {
  const agent = await group.add({ name })
  const peer = await startRawPeer(parseClusterKey(await readFile(join(agent.opts.dataDir, 'cluster.key'), 'utf8')))
  t.teardown(async () => await peer.stop())
  const id = (await agent.get<StatusView>('/v1/status')).node.id
  await dialAgent(peer, `${agent.listen}/p2p/${id}`)
  return { agent, peer, id }
}

test.serial('garbage on every peer protocol: the agent stays up, answers, and logs no uncaught error', async t => {
  const { agent, peer, id } = await agentAndPeer(t, 'g0')
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

test.serial('well-framed replica requests with hostile values: each answered, nothing written outside the store, the agent stays up', async t => {
  const { agent, peer, id } = await agentAndPeer(t, 'g1')
  const MiB = 1024 * 1024
  const headers: Array<[unknown, Uint8Array | null]> = [
    [{ op: 'write', volume: '../../escape', index: 0, offset: 0, epoch: 1, fua: false }, randomBytes(4096)],
    [{ op: 'write', volume: 'v1', index: 0, offset: 4 * MiB - 1, epoch: 1, fua: false }, randomBytes(4096)],
    [{ op: 'write', volume: 'v1', index: 2 ** 32, offset: 0, epoch: 1, fua: false }, randomBytes(16)],
    [{ op: 'write', volume: 'v1', index: 0, offset: 0, epoch: Number.MAX_SAFE_INTEGER + 2, fua: false }, randomBytes(16)],
    [{ op: 'zero', volume: 'v1', index: 0, offset: 0, length: 2 ** 40, epoch: 1, fua: false }, null],
    [{ op: 'read', volume: 'v1', index: 0, offset: 0, length: 2 ** 40 }, null],
    [{ op: 'read', volume: 'v1', index: 0, offset: 2 ** 50, length: 4096 }, null],
    [{ op: 'get', volume: 'nosuch', index: 7 }, null],
    [{ op: 'list', volume: 'v1', from: 0, limit: Number.MAX_SAFE_INTEGER }, null],
    [{ op: 'merge', volume: 'v1', from: '/etc' }, null],
    [{ op: 'freeze', layers: [] }, null],
    [{ op: 'retire', volume: 'v1', index: 0, version: { epoch: 1, seq: 1 }, since: 'x', quietMs: 0 }, null],
    [{ op: 'nosuch' }, null],
    ['not an object', null],
    // last: a frame over the longest one (an object and a header) ends the stream, as out of step
    [{ op: 'put', volume: 'v1', index: 1, epoch: 1 }, randomBytes(5 * MiB)]
  ]
  // each on a stream of its own (a stream asked for more bytes at once than a caller keeps
  // in flight, as a zero of 1 TiB beside other requests, is reset whole, by design)
  const ask = async (i: number): Promise<{ ok?: boolean, code?: string } | string> => {
    const [h, data] = headers[i]!
    const stream = await peer.dialProtocol(peerIdFromString(id), REPLICA_PROTOCOL, { signal: AbortSignal.timeout(5000) })
    const bs = byteStream(stream)
    // a reset while the frame is still going out rejects with the reset's event
    const sent = await bs.write(encodeFrame(i + 1, new TextEncoder().encode(JSON.stringify(h)), data).subarray(), { signal: AbortSignal.timeout(5000) })
      .then(() => null, (e: { error?: Error, name?: string }) => e.error?.name ?? e.name ?? 'write failed')
    if (sent != null) return sent
    const reader = new FrameReader(64 * MiB, 65535)
    const until = Date.now() + 5000
    while (Date.now() < until) {
      const got = await bs.read({ signal: AbortSignal.timeout(Math.max(1, until - Date.now())) }).catch((err: Error) => err)
      if (got instanceof Error) return got.name
      if (got == null) return 'ended'
      const f = reader.push(got)[0]
      if (f != null) { stream.abort(new Error('done')); return JSON.parse(new TextDecoder().decode(f.header)) as { ok?: boolean, code?: string } }
    }
    return 'no answer'
  }
  const replies: Array<{ ok?: boolean, code?: string } | string> = []
  for (let i = 0; i < headers.length; i++) replies.push(await ask(i))
  t.log(replies.map((r, i) => `${JSON.stringify(headers[i]![0]).slice(0, 48)} -> ${typeof r === 'string' ? r : r.ok === true ? 'ok' : r.code}`).join('\n'))
  // every request answered, the hostile values refused as invalid
  t.deepEqual(replies.slice(0, -1).filter(r => typeof r === 'string'), [], 'every request answered')
  for (const i of [0, 1, 2, 3, 4, 5, 6, 9, 10, 12, 13]) t.like(replies[i], { ok: false, code: 'invalid' }, JSON.stringify(headers[i]![0]))
  // the last: a frame over the longest one (an object and a header) ends its stream, as out of step
  t.is(replies.at(-1), 'StreamResetError')
  t.true(agent.running, `the agent is still running:\n${agent.log}`)
  t.is((await agent.get<StatusView>('/v1/status')).node.id, id)
  t.false(existsSync(join(agent.opts.dataDir, 'escape')) || existsSync(join(agent.opts.dataDir, 'gvs', 'escape')), 'nothing written outside the store')
  t.notRegex(agent.log, /uncaught|unhandled|TypeError|RangeError/i, 'no uncaught error in its log')
})
