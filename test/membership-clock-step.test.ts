// Finding 6 of the DVMM review: the wall clock stepped forward (NTP step, `date -s`)
// on a node must not make its members' silence long at once. Real membership
// services over the in-memory transport; the step is faked for the whole process by
// replacing Date.now (what a step changes), so both nodes see it, as two processes on
// one stepped host would.
import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost, type VgridHost } from '../protocol/host.ts'
import { generateClusterKey } from '../protocol/cluster-key.ts'
import { MembershipService } from '../protocol/membership-service.ts'
import type { Transition } from '../protocol/membership.ts'
import type { AdvertBody } from '../protocol/own-advert.ts'
import { systemClock } from '../node/service.ts'
import { takeover } from '../crdt/placement/index.ts'
import { waitFor } from './helpers/agent-process.ts'

const realNow = Date.now
const stepWallClock = (ms: number): void => { Date.now = () => realNow.call(Date) + ms }
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
/** DVMM's defaults (node/dvmm/service.ts) */
const FENCE = { fenceTimeoutMs: 5000, marginMs: 1500 }

const body = (name: string) => (): AdvertBody => ({
  name, addrs: [], capacity: { cpu: 1, memoryBytes: 1, diskBytes: 1 }, reserved: { cpu: 0, memoryBytes: 0, diskBytes: 0 }, free: { cpu: 1, memoryBytes: 1, diskBytes: 1 }, load: [0, 0, 0], version: '9.0.0', labels: {}, wireguard: null
})

async function pair (t: { teardown: (fn: () => Promise<void>) => void }, run: string): Promise<{ a: MembershipService, b: MembershipService, hosts: VgridHost[] }> {
  const clusterKey = generateClusterKey()
  const hosts: VgridHost[] = []
  const services: MembershipService[] = []
  t.teardown(async () => {
    Date.now = realNow
    await Promise.all(services.map(async s => { await s.stop({ graceful: false }) }))
    await Promise.all(hosts.map(async h => { await h.stop() }))
  })
  for (const name of ['a', 'b']) {
    const privateKey = await generateKeyPair('Ed25519')
    const host = await createHost({ privateKey, clusterKey, listen: [`/memory/${run}-${process.pid}-${name}`], mdns: false, transport: 'memory' })
    hosts.push(host)
    const svc = new MembershipService({ host, privateKey, clusterId: clusterKey.clusterId, body: body(name) })
    services.push(svc)
    await svc.start()
  }
  const [a, b] = services as [MembershipService, MembershipService]
  await hosts[0]!.dial(hosts[1]!.getMultiaddrs()[0]!)
  await waitFor(() => a.members.get(b.nodeId)?.state === 'alive' && b.members.get(a.nodeId)?.state === 'alive', 10_000, 'a and b hold each other alive')
  // past the first heartbeats, so that every watch is running
  await sleep(1000)
  return { a, b, hosts }
}

test.serial('a wall clock stepped forward by minutes does not make a live peer suspect or dead', async t => {
  const { a, b } = await pair(t, 'step-live')
  const seen: string[] = []
  const note = (who: string) => (tr: Transition): void => { if (tr.from === 'alive' && tr.to !== 'alive') seen.push(`${who}: ${tr.nodeId.slice(-6)} ${tr.from} -> ${tr.to}`) }
  a.on('transition', note('a'))
  b.on('transition', note('b'))
  stepWallClock(5 * 60_000)
  // several membership ticks (250 ms) and heartbeats (500 ms), past the dead timeout
  await sleep(4000)
  t.deepEqual(seen, [], 'no live member left alive')
  t.is(a.members.get(b.nodeId)?.state, 'alive')
  t.is(b.members.get(a.nodeId)?.state, 'alive')
})

test.serial('a wall clock stepped forward just after a holder fell silent does not let a takeover happen early', async t => {
  const { a, b, hosts } = await pair(t, 'step-takeover')
  // b crashes: its connections drop, a suspects it at once
  await b.stop({ graceful: false })
  await hosts[1]!.stop()
  await waitFor(() => a.members.get(b.nodeId)?.state === 'suspect', 10_000, 'a suspects b')
  // DVMM's "last heard of" (node/dvmm/service.ts): its last beat, or once it went
  // silent, when this node first doubted it
  const silentSince = a.members.get(b.nodeId)!.since
  stepWallClock(10 * 60_000)
  // what DVMM would decide the moment b is dead in a's table
  const decision = await new Promise<ReturnType<typeof takeover>>(resolve => {
    const check = (): void => {
      const m = a.members.get(b.nodeId)
      if (m?.state !== 'dead') return
      a.off('transition', check)
      resolve(takeover({ holderAlive: false, holderLastHeard: Math.max(m.lastSeen, silentSince), now: systemClock.now(), ...FENCE }))
    }
    a.on('transition', check)
    check()
  })
  t.false(decision.allowed, decision.reason)
  // and it does come, once the fence timeout and margin have passed
  await waitFor(() => takeover({ holderAlive: false, holderLastHeard: silentSince, now: systemClock.now(), ...FENCE }).allowed, 15_000, 'the takeover is allowed in the end')
})

test.serial('a wall clock stepped back just after a peer fell silent does not delay its death', async t => {
  const { a, b, hosts } = await pair(t, 'step-back')
  await b.stop({ graceful: false })
  await hosts[1]!.stop()
  await waitFor(() => a.members.get(b.nodeId)?.state === 'suspect', 10_000, 'a suspects b')
  stepWallClock(-10 * 60_000)
  // the suspicion timeout (2.5 s) with room for a loaded machine, far less than the step
  await waitFor(() => a.members.get(b.nodeId)?.state === 'dead', 30_000, 'a holds b dead')
  t.pass()
})
