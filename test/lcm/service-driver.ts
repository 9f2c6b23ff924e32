// Runs one LcmService inside a network namespace for test/lcm/service.test.ts: a real
// crdt Replica as its document, a members table the test feeds, JSON lines on
// stdin (commands) and stdout (answers). Not a mock of the service: the service,
// WireGuard, nft and ip all run for real; only the agent around it is this script.
import { EventEmitter } from 'node:events'
import { createInterface } from 'node:readline'
import { Registry } from 'prom-client'
import { Replica } from '../../crdt/replica.ts'
import { MIGRATIONS } from '../../crdt/genesis.ts'
import type { Kind } from '../../crdt/schema.ts'
import type { Member, Transition } from '../../protocol/membership.ts'
import type { Advert } from '../../protocol/advert.ts'
import { createLogger } from '../../node/log.ts'
import { LcmService, type LcmState } from '../../node/lcm/service.ts'

const cfg = JSON.parse(process.argv[2]!) as { dataDir: string, peerId: string, clusterId: string, port: number, vmInterfaces: Record<string, string>, addressPollMs: number, backend?: 'kernel' | 'userspace', failReads?: number }
const out = (o: unknown): void => { process.stdout.write(JSON.stringify(o) + '\n') }

const replica = Replica.create({ clusterId: cfg.clusterId, nodeId: cfg.peerId, migrations: MIGRATIONS })
const docEvents = new EventEmitter<{ changed: [] }>()
const state: LcmState = {
  // failReads: the first reads of the document fail, as a plan that cannot be made
  read: () => {
    if ((cfg.failReads ?? 0) > 0) { cfg.failReads!--; throw new Error('the document cannot be read (test)') }
    return replica.read()
  },
  write: async fn => { const r = replica.change(fn).result; docEvents.emit('changed'); return r },
  on: (e, fn) => docEvents.on(e, fn),
  off: (e, fn) => docEvents.off(e, fn)
}
const members = new Map<string, Member>()
// as the membership service: a transition when a member's state changes, an advert whenever its advert is news
const memberEvents = new EventEmitter<{ transition: [Transition], advert: [Advert] }>()
const membership = {
  get members () { return members },
  on: (e: 'transition', fn: (t: Transition) => void) => memberEvents.on(e, fn),
  off: (e: 'transition', fn: (t: Transition) => void) => memberEvents.off(e, fn)
}
const adverts = {
  on: (e: 'advert', fn: (a: Advert) => void) => memberEvents.on(e, fn),
  off: (e: 'advert', fn: (a: Advert) => void) => memberEvents.off(e, fn)
}
const registry = new Registry()
const lcm = new LcmService({
  config: { dataDir: cfg.dataDir },
  log: createLogger({ component: cfg.peerId, level: 'warn' }),
  registry,
  peerId: cfg.peerId,
  clusterId: cfg.clusterId,
  membership,
  adverts,
  state,
  onAdvert: wg => { out({ type: 'advert', wg }) },
  vms: { interfaceOf: vm => cfg.vmInterfaces[vm] ?? null }
}, { port: cfg.port, addressPollMs: cfg.addressPollMs, keepaliveS: 1, backend: cfg.backend })

type Cmd =
  | { type: 'members', members: Array<{ nodeId: string, name: string, state: Member['state'], wireguard: Advert['wireguard'] }> }
  | { type: 'doc', ops: Array<{ op: 'put', kind: Kind, draft: never } | { op: 'remove', kind: Kind, key: string }> }
  | { type: 'net' } | { type: 'metrics' } | { type: 'stop' } | { type: 'names', vm: string }
  /** judge the tunnels now, as if the time were `aheadMs` later (a tunnel's bound is minutes) */
  | { type: 'tunnels', aheadMs: number }

async function handle (c: Cmd): Promise<void> {
  if (c.type === 'members') {
    for (const m of c.members) {
      const before = members.get(m.nodeId)?.state ?? 'unknown'
      const advert = { nodeId: m.nodeId, name: m.name, wireguard: m.wireguard } as unknown as Advert
      members.set(m.nodeId, { nodeId: m.nodeId, state: m.state, since: Date.now(), lastSeen: Date.now(), version: { incarnation: 1, seq: 1 }, advert })
      if (before !== m.state) memberEvents.emit('transition', { nodeId: m.nodeId, from: before, to: m.state })
      memberEvents.emit('advert', advert)
    }
  } else if (c.type === 'doc') {
    await state.write(w => {
      for (const o of c.ops) {
        if (o.op === 'put') w.put(o.kind, o.draft)
        else w.remove(o.kind, o.key)
      }
    })
  } else if (c.type === 'net') {
    await lcm.settled()
    out({ type: 'net', status: lcm.status(), peers: await lcm.peerStates(), drops: await lcm.drops(), flows: lcm.last?.rules.flows ?? [], skipped: lcm.last?.rules.skipped ?? [] })
    return
  } else if (c.type === 'names') {
    await lcm.settled()
    out({ type: 'names', names: lcm.overlayOf(c.vm)?.names ?? null })
    return
  } else if (c.type === 'tunnels') {
    await lcm.settled()
    const down = await lcm.checkTunnels(Date.now() + c.aheadMs)
    out({ type: 'tunnels', down, problems: lcm.problems() })
    return
  } else if (c.type === 'metrics') {
    out({ type: 'metrics', text: await registry.metrics() })
    return
  } else if (c.type === 'stop') {
    await lcm.stop()
    out({ type: 'stopped' })
    process.exit(0)
  }
  await lcm.settled()
  out({ type: 'done' })
}

try {
  await lcm.start()
} catch (err) {
  out({ type: 'error', message: (err as Error).message })
  process.exit(1)
}
out({ type: 'ready', status: lcm.status() })
let chain = Promise.resolve()
createInterface({ input: process.stdin }).on('line', line => {
  chain = chain.then(async () => { await handle(JSON.parse(line) as Cmd) }).catch(err => { out({ type: 'error', message: (err as Error).message }) })
})
process.on('SIGTERM', () => { void lcm.stop().finally(() => process.exit(0)) })
