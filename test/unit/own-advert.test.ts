import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { GossipSub } from '@libp2p/gossipsub'
import { OwnAdvert, refreshFor, type AdvertBody } from '../../protocol/own-advert.ts'
import type { Advert } from '../../protocol/advert.ts'
import { waitFor } from '../helpers/agent-process.ts'

const r = { cpu: 2, memoryBytes: 10, diskBytes: 100 }
const body = (): AdvertBody => ({
  name: 'n1', addrs: [], capacity: r, reserved: { cpu: 0, memoryBytes: 0, diskBytes: 0 }, free: r, load: [0, 0, 0], version: '0.1.0', labels: {}, wireguard: null
})

/** An OwnAdvert over a stand-in for gossipsub: `recipients()` says how many topic peers each publish reaches. */
async function ownAdvert (opts: { recipients: () => number, members: () => number, refreshMs?: number }): Promise<{ own: OwnAdvert, sent: Array<{ advert: Advert, at: number }> }> {
  const privateKey = await generateKeyPair('Ed25519')
  const sent: Array<{ advert: Advert, at: number }> = []
  const pubsub = {
    publish: async () => ({ recipients: Array.from({ length: opts.recipients() }, () => peerIdFromPrivateKey(privateKey)) })
  } as unknown as GossipSub
  const own = new OwnAdvert({
    pubsub,
    topic: 't',
    privateKey,
    clusterId: 'c1',
    nodeId: peerIdFromPrivateKey(privateKey).toString(),
    body,
    refreshMs: opts.refreshMs ?? 100,
    members: opts.members,
    onSigned: advert => { sent.push({ advert, at: Date.now() }) },
    onSent: () => {}
  })
  return { own, sent }
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

test('the refresh period grows with the grid: about one refresh a second reaches each node', t => {
  t.is(refreshFor(1, 10_000), 10_000)
  t.is(refreshFor(200, 10_000), 200_000)
  t.is(refreshFor(5000, 10_000), 300_000, 'at most 5 minutes')
})

test('a newcomer re-publishes on new topic peers until one advert reached a peer, then stops', async t => {
  let peers = 0
  const { own, sent } = await ownAdvert({ recipients: () => peers, members: () => 50 })
  own.start()
  await waitFor(() => sent.length === 1, 1000, 'the advert at start')
  t.is(sent.length, 1, 'the first advert goes out at start, to nobody yet')
  peers = 1
  own.onNewTopicPeer()
  await waitFor(() => sent.length === 2, 1000, 'an advert for the first topic peer')
  t.is(sent.length, 2, 'the first topic peer gets a new advert')
  await sleep(20)
  peers = 5
  own.onNewTopicPeer()
  own.onNewTopicPeer()
  await sleep(100)
  t.is(sent.length, 2, 'once one advert reached a peer, later peers pull it by member sync')
  t.deepEqual(sent.map(s => s.advert.seq), [1, 2])
  await own.stop({ graceful: false })
})

test('the refresh follows the grid it learnt after starting, and any advert counts as one', async t => {
  let members = 1
  const { own, sent } = await ownAdvert({ recipients: () => 3, members: () => members })
  const t0 = Date.now()
  own.start()
  members = 2 // the grid a newcomer learns right after its first advert: the refresh is 2 s (±10 %), not 1 s
  await sleep(1300)
  t.is(sent.length, 1, 'no refresh after the period of a lonely node')
  own.advertiseNow() // a change, 1.3 s in: the next refresh is due 2 s after it
  await waitFor(() => sent.length === 2, 1000, 'the changed advert')
  await waitFor(() => sent.length === 3, 5000, 'the refresh')
  t.is(sent.length, 3)
  t.true(sent[2]!.at - sent[1]!.at >= 1800 - 20, `refresh ${sent[2]!.at - sent[1]!.at} ms after the change`)
  t.true(sent[2]!.at - t0 >= 3000, 'the change counted as a refresh')
  await own.stop({ graceful: false })
})
