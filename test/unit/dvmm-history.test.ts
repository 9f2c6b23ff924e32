// A VM's history as an agent derives it from the leases it sees (History.observe).
import test from 'ava'
import { History } from '../../node/dvmm/history.ts'
import type { Lease } from '../../crdt/index.ts'

const lease = (o: Partial<Lease>): Lease => ({ vm: 'web', holder: 'n1', epoch: 1, cpu: 1, memoryBytes: 1 << 20, status: 'claimed', ...o } as Lease)
const name = (n: string): string => n.toUpperCase()

test('a run killed without a crash and started again (fenced, or by the watchdog while its agent was down) shows as killed, then started', t => {
  const h = new History()
  h.observe(new Map([['web', lease({ status: 'running' })]]), 1, name)
  h.observe(new Map([['web', lease({ status: 'starting', reason: 'killed: fenced: this agent stalled 7 s' })]]), 2, name)
  h.observe(new Map([['web', lease({ status: 'running' })]]), 3, name)
  t.deepEqual(h.of('web').map(e => [e.at, e.event, e.node, e.detail]), [
    [1, 'placed', 'N1', undefined], [1, 'started', 'N1', undefined],
    [2, 'killed', 'N1', 'killed: fenced: this agent stalled 7 s'],
    [3, 'started', 'N1', undefined]
  ])
})

test('a crash is a crash, not also a kill; a failover is no kill', t => {
  const h = new History()
  h.observe(new Map([['web', lease({ status: 'running' })]]), 1, name)
  h.observe(new Map([['web', lease({ status: 'starting', reason: 'exited (code 1)', crashes: [2] })]]), 2, name)
  h.observe(new Map([['web', lease({ status: 'starting', holder: 'n2', epoch: 2, from: 'n1' })]]), 3, name)
  t.deepEqual(h.of('web').map(e => e.event), ['placed', 'started', 'crashed', 'failed-over'])
})
