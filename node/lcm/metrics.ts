// The LCM's gauges, read when /metrics is scraped: bytes per tunnel (from `wg show
// dump`), drops per VM pair and packets per declared connection (from `nft -j`).
import { Gauge, type Registry } from 'prom-client'
import type { LcmView } from './types.ts'

type Source = Pick<LcmView, 'peerStates' | 'drops' | 'counters' | 'last'>

export function registerGauges (registry: Registry, lcm: Source): void {
  const registers = [registry]
  const bytes: Gauge<'peer' | 'direction'> = new Gauge({
    name: 'vgrid_lcm_tunnel_bytes', help: 'Bytes through each WireGuard tunnel of this node, by peer node and direction', labelNames: ['peer', 'direction'] as const, registers,
    collect: async () => {
      bytes.reset()
      for (const p of await lcm.peerStates()) {
        bytes.set({ peer: p.node ?? p.publicKey, direction: 'rx' }, p.rxBytes)
        bytes.set({ peer: p.node ?? p.publicKey, direction: 'tx' }, p.txBytes)
      }
    }
  })
  const drops: Gauge<'src' | 'dst'> = new Gauge({
    name: 'vgrid_lcm_drops', help: 'Packets between VMs dropped on this node (no declared connection), by source and destination VM', labelNames: ['src', 'dst'] as const, registers,
    collect: async () => {
      drops.reset()
      for (const d of await lcm.drops()) drops.set({ src: d.srcVm ?? d.src, dst: d.dstVm ?? d.dst }, d.packets)
    }
  })
  const spoofed: Gauge<'src' | 'dst'> = new Gauge({
    name: 'vgrid_lcm_spoofed', help: 'Of vgrid_lcm_drops, the packets whose source VM address was forged (they came in where that address is not routed)', labelNames: ['src', 'dst'] as const, registers,
    collect: async () => {
      spoofed.reset()
      for (const d of await lcm.drops()) if ((d.spoofed ?? 0) > 0) spoofed.set({ src: d.srcVm ?? d.src, dst: d.dstVm ?? d.dst }, d.spoofed!)
    }
  })
  const passed: Gauge<'link'> = new Gauge({
    name: 'vgrid_lcm_link_packets', help: 'Packets passed for each declared connection on this node', labelNames: ['link'] as const, registers,
    collect: async () => {
      passed.reset()
      const c = await lcm.counters()
      for (const f of lcm.last?.rules.flows ?? []) passed.set({ link: f.link }, c.counters.get(f.counter)?.packets ?? 0)
    }
  })
}
