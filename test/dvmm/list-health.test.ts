// `vm ls` (GET /v1/vms) does not wait out a volume store that is slow to say how its
// VMs' disks are: a holder that hangs (SIGSTOP) held every list 3-5 s (bb20). The rows
// come without disk health after LIST_HEALTH_WAIT_MS; `vm show` still waits for it.
import test from 'ava'
import Fastify from 'fastify'
import { harness, vmSpec, until } from './fence-harness.ts'
import { LIST_HEALTH_WAIT_MS } from '../../node/dvmm/routes.ts'
import type { DiskHealth } from '../../node/dvmm/vm-disks.ts'
import type { VmRow } from '../../node/dvmm/vms.ts'

const VOL = 'vol-000000000001'

test.serial('a list answers within its wait while the disk health does not come; once it does, the list says it', async t => {
  let answer: ((h: ReadonlyMap<string, DiskHealth>) => void) | null = null
  let asked = 0
  /** the lists ask from now on (the VM's start asked before: vm-disks.ts disksReadable) */
  let listing = false
  const h = await harness({
    others: [],
    volumes: {
      uriOf: () => 'nbd+unix:///t/d?socket=/nonexistent',
      fence: async () => {},
      // the start's ask is answered (degraded, but it reads); the first list's ask hangs (a holder frozen), later ones answer at once
      health: async ids => await new Promise(resolve => {
        const degraded = new Map(ids.map(id => [id, { state: 'degraded', reasons: ['a copy is missing'] }]))
        if (listing && asked++ === 0) answer = resolve
        else resolve(degraded)
      })
    },
    seed: w => {
      w.put('volumes', { id: VOL, path: '/t/d', sizeBytes: 4 * 2 ** 20, replicas: 1, state: 'ready', parent: null, snapshots: {} } as never)
      w.put('vms', { id: 'v', name: 'v', app: null, desired: 'running', spec: vmSpec(['fake:run'], { volumes: [VOL] }) } as never)
    }
  })
  t.teardown(h.stop)
  const app = Fastify()
  h.dvmm.routes(app)
  t.teardown(async () => { await app.close() })
  t.true(await until(() => h.replica.read().get('leases', 'v')?.value.status === 'running', 5000), 'the VM runs')
  listing = true
  const t0 = performance.now()
  const first = await app.inject({ method: 'GET', url: '/v1/vms' })
  const took = performance.now() - t0
  t.is(first.statusCode, 200)
  t.true(took >= LIST_HEALTH_WAIT_MS - 50 && took < LIST_HEALTH_WAIT_MS + 1500, `answered in ${Math.round(took)} ms`)
  t.like(first.json<{ vms: VmRow[] }>().vms[0], { id: 'v', state: 'running' })
  t.is(asked, 1)
  answer!(new Map())
  const next = await app.inject({ method: 'GET', url: '/v1/vms' })
  t.regex(next.json<{ vms: VmRow[] }>().vms[0]?.reason ?? '', /its disk \/t\/d is degraded: a copy is missing/)
})
