// A peer that holds the cluster key but sends garbage on the state sync protocol
// (random bytes, an oversized frame, a malformed sync message, a change that fails
// the schema) is disconnected, the refusal is counted in /metrics, and nothing
// breaks: the document is untouched and the agents keep syncing.
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import * as A from '@automerge/automerge'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { createHost, type VgridHost } from '../protocol/host.ts'
import { parseClusterKey } from '../protocol/cluster-key.ts'
import { Replica } from '../crdt/index.ts'
import { STATE_SYNC_PROTOCOL, FRAME_SYNC } from '../node/state/index.ts'
import { waitFor, type AgentProcess } from './helpers/agent-process.ts'
import { startGrid, stateOf, metricValue, setLabel, nodesOf } from './state-grid.ts'

function varint (n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) { out.push((n % 0x80) | 0x80); n = Math.floor(n / 0x80) }
  out.push(n)
  return Uint8Array.from(out)
}

const frame = (type: number, body: Uint8Array): Uint8Array => {
  const b = new Uint8Array(body.length + 1)
  b[0] = type
  b.set(body, 1)
  return b
}

test('garbage on the sync protocol gets the sender disconnected and breaks nothing', async t => {
  const { agents, ids, keyFile } = await startGrid(t, 2)
  const [victim, other] = agents as [AgentProcess, AgentProcess]
  const clusterKey = parseClusterKey(await readFile(keyFile, 'utf8'))
  const target = multiaddr(`${victim.listen}/p2p/${ids[0]}`)
  const hosts: VgridHost[] = []
  t.teardown(async () => { await Promise.all(hosts.map(async h => await h.stop())) })
  t.is(await setLabel(victim, 'n1', 'before', 'attack'), 200)
  const before = await stateOf(victim)

  /** A fresh attacker (the victim quarantines each one it catches): returns its open sync stream. */
  async function attacker (): Promise<{ host: VgridHost, stream: Stream }> {
    const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
    hosts.push(host)
    const stream = await host.dialProtocol(target, STATE_SYNC_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    return { host, stream }
  }
  const disconnected = async (host: VgridHost, what: string): Promise<void> => {
    await waitFor(() => host.getConnections(peerIdFromString(ids[0]!)).length === 0, 10_000, `the victim hangs up on ${what}`)
  }
  const rejected = async (reason: string): Promise<number> => metricValue(await victim.metrics(), 'vgrid_state_sync_rejected_total', `reason="${reason}"`)

  // 1. a frame longer than any sync message may be
  let a = await attacker()
  a.stream.send(Uint8Array.from([...varint(200 * 1024 * 1024), ...randomBytes(64)]))
  await disconnected(a.host, 'an oversized frame')
  t.is(await rejected('oversized'), 1)

  // 2. a well-framed message that is not an Automerge sync message
  a = await attacker()
  await lpStream(a.stream).write(frame(FRAME_SYNC, randomBytes(300)))
  await disconnected(a.host, 'a malformed sync message')
  // 3. an unknown frame type
  a = await attacker()
  await lpStream(a.stream).write(frame(0x7f, randomBytes(10)))
  await disconnected(a.host, 'an unknown frame type')
  // 4. a real sync message cut in half
  a = await attacker()
  const [, whole] = A.generateSyncMessage(A.change(A.init<{ x: number }>(), d => { d.x = 1 }), A.initSyncState())
  await lpStream(a.stream).write(frame(FRAME_SYNC, whole!.subarray(0, Math.floor(whole!.length / 2))))
  await disconnected(a.host, 'a truncated sync message')
  t.true(await rejected('malformed') >= 3)

  // 5. a well-formed sync session whose changes fail the schema
  a = await attacker()
  const me = a.host.peerId.toString()
  const base = Replica.create({ clusterId: clusterKey.clusterId, nodeId: me }).save()
  let doc = A.load<Record<string, Record<string, unknown>>>(base, { actor: 'ee'.repeat(16) })
  doc = A.change(doc, d => {
    d.nodeLabels![`${ids[1]}/smuggled`] = { node: new A.ImmutableString(ids[1]!), key: new A.ImmutableString('smuggled'), value: new A.ImmutableString('x'), at: 1, by: new A.ImmutableString(me) }
    d.vms!.evil = { id: new A.ImmutableString('evil'), cpu: new A.ImmutableString('all of them') }
  })
  let sync = A.initSyncState()
  const lp = lpStream(a.stream, { maxDataLength: 64 * 1024 * 1024 })
  const talk = (async () => {
    for (;;) {
      let msg
      ;[sync, msg] = A.generateSyncMessage(doc, sync)
      if (msg != null) await lp.write(frame(FRAME_SYNC, msg))
      const reply = (await lp.read()).subarray()
      ;[doc, sync] = A.receiveSyncMessage(doc, sync, reply.subarray(1))
    }
  })()
  await talk.catch(() => {}) // ends when the victim closes the stream
  await disconnected(a.host, 'changes that fail the schema')
  t.is(await rejected('schema'), 1)

  // nothing of it got in, and the grid works as before
  const after = await stateOf(victim)
  t.deepEqual(after.heads, before.heads)
  t.is(after.digest, before.digest)
  t.is(after.counts.vms, 0)
  t.is((await nodesOf(victim)).get('n1')?.labels.smuggled, undefined)
  t.is((await victim.get<{ ok: boolean }>('/healthz')).ok, true)
  t.is(await setLabel(victim, 'n1', 'after', 'attack'), 200)
  await waitFor(async () => (await nodesOf(other)).get('n1')?.labels.after === 'attack', 10_000, 'the victim still syncs with its real peer')
  t.regex(victim.log, /rejected state sync data from peer; closing its connection .*reason=schema/)
})
