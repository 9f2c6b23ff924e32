// Counts, inside a namespace, every packet it receives by (source address, protocol):
// what reached it, whether or not anything answered. Lives in the namespace's own
// table (inet arrivals), gone with the namespace.
import { nsRun } from '../../node/netns/netns.ts'

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
