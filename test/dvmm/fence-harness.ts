// One DVMM service on a real document replica and the fake driver, with a membership
// table the test edits and a state whose writes the test can refuse or hang: for the
// fence, stop and queued-update tests (fence-*.test.ts).
import { EventEmitter } from 'node:events'
import { Registry } from 'prom-client'
import { Replica } from '../../crdt/replica.ts'
import type { Writer } from '../../crdt/index.ts'
import { DvmmService, type DvmmInit, type DvmmState, type DvmmMembership } from '../../node/dvmm/index.ts'
import { FakeDriver, FakeNode } from '../../node/dvmm/drivers/fake.ts'
import type { VmDriver } from '../../node/dvmm/drivers/types.ts'
import type { VolumeAccess } from '../../node/dvmm/vm-disks.ts'
import type { Member } from '../../protocol/membership.ts'
import { silentLogger } from '../../node/log.ts'
import { systemClock } from '../../node/service.ts'

export const GiB = 2 ** 30
export const ME = 'Nme'
export const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

export function member (id: string, state: 'alive' | 'suspect' | 'dead'): Member {
  const now = systemClock.now()
  return { nodeId: id, state, since: now - 60_000, lastSeen: now, version: [1, 0], advert: { name: id, capacity: { cpu: 8, memoryBytes: 16 * GiB, diskBytes: 0 }, labels: {} } } as unknown as Member
}

export const vmSpec = (command: string[], extra: Record<string, unknown> = {}): Record<string, unknown> => ({ driver: 'process', cpu: 1, memoryBytes: GiB, volumes: [], constraints: {}, command, ...extra })

export interface Harness {
  dvmm: DvmmService
  replica: Replica
  fake: FakeNode
  driver: FakeDriver
  members: Map<string, Member>
  /** 'ok', 'slow' (each read of the document costs 250 ms of CPU, so a step is long and the next is spaced), 'refuse' (every write throws, as on a full disk) or 'hang' (writes never finish, as on a stuck fsync) */
  setWrites: (mode: 'ok' | 'slow' | 'refuse' | 'hang') => void
  /** membership changed: the service steps */
  transition: () => void
  /** the other two go silent: this node sees 1 of 3 */
  cutOff: () => void
  writes: () => number
  stop: () => Promise<void>
}

export interface HarnessOptions {
  /** the document before the service starts */
  seed?: (w: Writer) => void
  /** VMs running on the node before the service starts (adopted) */
  running?: Array<{ id: string, command: string[] }>
  /** wraps the fake driver (slow starts, failing stops) */
  wrap?: (d: FakeDriver) => VmDriver
  others?: string[]
  /** this node on the roll before the service starts (default true) */
  selfOnRoll?: boolean
  /** the others' membership state at the start (default alive) */
  othersState?: 'alive' | 'suspect' | 'dead'
  /** --join was given */
  join?: string[]
  init?: DvmmInit
  /** the volume store as DVMM sees it (none by default) */
  volumes?: VolumeAccess
  /** how members are found silent (DvmmMembership.detection; none by default: every member watches every other) */
  detection?: DvmmMembership['detection']
}

export async function harness (o: HarnessOptions = {}): Promise<Harness> {
  const replica = Replica.create({ clusterId: 'c1', nodeId: ME })
  const ev = new EventEmitter()
  let mode: 'ok' | 'slow' | 'refuse' | 'hang' = 'ok'
  let writes = 0
  const state: DvmmState = {
    read: () => {
      if (mode === 'slow') for (const end = performance.now() + 250; performance.now() < end;);
      return replica.read()
    },
    write: async <T>(fn: (w: Writer) => T): Promise<T> => {
      if (mode === 'hang') return await new Promise<T>(() => {})
      if (mode === 'refuse') throw new Error('disk full: writes refused')
      const r = replica.change(fn).result
      writes++
      ev.emit('changed')
      return r
    },
    on: ((e: 'changed', f: () => void) => ev.on(e, f)) as DvmmState['on'],
    off: ((e: 'changed', f: () => void) => ev.off(e, f)) as DvmmState['off']
  }
  const others = o.others ?? ['Nb', 'Nc']
  replica.change(w => {
    for (const n of [...(o.selfOnRoll === false ? [] : [ME]), ...others]) w.put('roll', { node: n, name: n, joined: 1 })
    o.seed?.(w)
  })
  const fake = new FakeNode()
  if (o.running != null) {
    const pre = new FakeDriver({ clock: systemClock }, { node: fake })
    for (const v of o.running) await pre.start({ id: v.id, vcpus: 1, memoryMiB: 1024, boot: { kind: 'command', command: v.command } })
  }
  const driver = new FakeDriver({ clock: systemClock }, { node: fake })
  const d = o.wrap?.(driver) ?? driver
  const members = new Map<string, Member>([[ME, member(ME, 'alive')], ...others.map(n => [n, member(n, o.othersState ?? 'alive')] as [string, Member])])
  const mev = new EventEmitter()
  const membership = {
    members,
    ...(o.detection != null ? { detection: o.detection } : {}),
    on: (e: string, f: () => void) => mev.on(e, f),
    off: (e: string, f: () => void) => mev.off(e, f)
  } as unknown as DvmmMembership
  const dvmm = new DvmmService({
    peerId: ME, log: silentLogger, clock: systemClock, registry: new Registry(), config: { name: ME, ...(o.join != null ? { join: o.join } : {}) },
    state, membership, drivers: { process: d, qemu: d }, onReserved: () => {}, ...(o.volumes != null ? { volumes: o.volumes } : {})
  }, { fenceTimeoutMs: 1000, takeoverMarginMs: 500, tickMs: 100, settleMs: 100, stopGraceMs: 4000, ...o.init })
  await dvmm.start()
  const transition = (): void => { mev.emit('transition') }
  return {
    dvmm, replica, fake, driver, members,
    setWrites: m => { mode = m },
    transition,
    cutOff: () => {
      for (const n of others) members.set(n, member(n, 'suspect'))
      transition()
    },
    writes: () => writes,
    stop: async () => {
      await dvmm.stop({ graceful: false })
      for (const [id, v] of fake.vms) if (v.state !== 'stopped' && v.state !== 'failed') await driver.kill(id).catch(() => {})
    }
  }
}

export async function until (check: () => boolean, limitMs: number): Promise<boolean> {
  const t0 = Date.now()
  while (!check()) {
    if (Date.now() - t0 > limitMs) return false
    await sleep(20)
  }
  return true
}
