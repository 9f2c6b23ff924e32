// For the rules tests in namespaces: counting, inside a namespace, every packet it
// receives by (source address, protocol), what reached it whether or not anything
// answered (in the namespace's own table, inet arrivals, gone with the namespace); and
// two nodes tunnelling the VM prefix to each other, as the service sets them up.
import type { ExecutionContext } from 'ava'
import { ip, nsRun } from '../../node/netns/netns.ts'
import { nodeAddress, type OverlayPrefix } from '../../node/lcm/overlay.ts'
import { generateKeypair, WgInterface } from '../../node/lcm/wireguard.ts'
import { interfaceName } from '../../node/lcm/wireguard-format.ts'

export type Arrivals = (src: string, proto: 'tcp' | 'udp') => number

/** Starts counting in `ns`; each call of the result reads the counts as they are then. */
export async function watchArrivals (ns: string): Promise<() => Promise<Arrivals>> {
  await nsRun(ns, 'nft', ['-f', '-'], {
    input: 'table inet arrivals {\n  set seen { type ipv4_addr . inet_proto; size 1024; flags dynamic; counter; }\n' +
      '  chain pre { type filter hook prerouting priority -300; policy accept; update @seen { ip saddr . meta l4proto }; }\n}\n'
  })
  return async () => {
    const doc = JSON.parse(await nsRun(ns, 'nft', ['-j', 'list', 'set', 'inet', 'arrivals', 'seen'])) as { nftables: Array<{ set?: { elem?: Array<{ elem: { val: { concat: [string, string | number] }, counter: { packets: number } } }> } }> }
    const elems = doc.nftables.flatMap(i => i.set?.elem ?? [])
    return (src, proto) => elems
      .filter(e => e.elem.val.concat[0] === src && ([proto, proto === 'tcp' ? 6 : 17] as Array<string | number>).includes(e.elem.val.concat[1]))
      .reduce((n, e) => n + e.elem.counter.packets, 0)
  }
}

/**
 * Nodes `n` and `m` (underlay addresses `${net}.1` and `${net}.2`, overlay node indexes
 * 1 and 2) tunnel the VM prefix to each other by WireGuard; each peer's allowed IPs are
 * the other node's address and the VM addresses it hosts (`nVms`, `mVms`).
 */
export async function tunnelNodes (t: ExecutionContext, p: OverlayPrefix, net: string, [n, m]: [string, string], nVms: string[], mVms: string[]): Promise<void> {
  const [kn, km] = [await generateKeypair(), await generateKeypair()]
  const wgs: WgInterface[] = []
  for (const [host, key, i] of [[n, kn, 1], [m, km, 2]] as const) {
    const w = await WgInterface.create({ name: interfaceName(`${host}-wg`), netns: host, privateKey: key.privateKey, listenPort: 51820, addresses: [`${nodeAddress(p, i).v4}/32`] })
    t.teardown(async () => { await w.destroy() })
    await ip(['-n', host, 'route', 'add', p.vmV4, 'dev', w.name])
    wgs.push(w)
  }
  await wgs[0]!.setPeer({ publicKey: km.publicKey, endpoint: `${net}.2:51820`, allowedIps: [`${nodeAddress(p, 2).v4}/32`, ...mVms.map(a => `${a}/32`)] })
  await wgs[1]!.setPeer({ publicKey: kn.publicKey, endpoint: `${net}.1:51820`, allowedIps: [`${nodeAddress(p, 1).v4}/32`, ...nVms.map(a => `${a}/32`)] })
}
