// In-process libp2p hosts for the GVS service tests: one cluster key, memory transport,
// every pair dialled; the services the test adds to `svcs` are stopped, then the hosts,
// then the temp dir is removed, when the test ends.
import type { ExecutionContext } from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHost, type VgridHost } from '../../protocol/host.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import type { GvsService } from '../../node/gvs/service.ts'

export async function memoryHosts (t: ExecutionContext, n: number, tag: string): Promise<{ dir: string, hosts: VgridHost[], svcs: GvsService[] }> {
  const dir = await mkdtemp(join(tmpdir(), `${tag}-`))
  const clusterKey = generateClusterKey()
  const hosts: VgridHost[] = []
  const svcs: GvsService[] = []
  t.teardown(async () => {
    for (const s of svcs) await s.stop()
    for (const h of hosts) await h.stop()
    await rm(dir, { recursive: true, force: true })
  })
  for (let i = 0; i < n; i++) {
    hosts.push(await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/${tag}${process.pid}-${i}`], mdns: false, transport: 'memory' }))
  }
  for (const a of hosts) for (const b of hosts) if (a !== b) await a.dial(b.getMultiaddrs()[0]!)
  return { dir, hosts, svcs }
}
