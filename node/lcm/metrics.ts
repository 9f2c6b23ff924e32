// The LCM's gauges, read when /metrics is scraped: bytes per tunnel (from `wg show
// dump`), drops per VM pair and packets per declared connection (from `nft -j`).
import { Gauge, type Registry } from 'prom-client'
import type { LcmView } from './types.ts'

type Source = Pick<LcmView, 'peerStates' | 'drops' | 'counters' | 'last'>
type Drop = Awaited<ReturnType<LcmView['drops']>>[number]

/**
 * The label value of every address that is no VM's (the node's, a scanner's or a
 * forger's; a VM's link address counts as that VM's): one series for all of them,
 * where raw addresses could make up to 65,536. Not a valid VM name (node/dvmm/vms.ts
 * VM_NAME), so no VM's.
 */
export const OTHER = '(other)'

/** Drops summed per (source VM, destination VM), non-VM addresses as OTHER. */
export function dropSeries (drops: Drop[], value: (d: Drop) => number): Map<string, { src: string, dst: string, value: number }> {
  const out = new Map<string, { src: string, dst: string, value: number }>()
  for (const d of drops) {
    const src = d.srcVm ?? d.srcLink ?? OTHER
    const dst = d.dstVm ?? OTHER
    const key = JSON.stringify([src, dst])
    const s = out.get(key) ?? { src, dst, value: 0 }
    s.value += value(d)
    out.set(key, s)
  }
  return out
}

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
    name: 'vgrid_lcm_drops', help: `Packets from or to VMs dropped on this node (no declared connection), by source and destination VM (${OTHER}: any address that is no VM's)`, labelNames: ['src', 'dst'] as const, registers,
    collect: async () => {
      drops.reset()
      for (const s of dropSeries(await lcm.drops(), d => d.packets).values()) drops.set({ src: s.src, dst: s.dst }, s.value)
    }
  })
  const spoofed: Gauge<'src' | 'dst'> = new Gauge({
    name: 'vgrid_lcm_spoofed', help: 'Of vgrid_lcm_drops, the packets with a forged source (a VM address that came in where it is not routed, or a VM interface\'s packet from an address that is no VM\'s)', labelNames: ['src', 'dst'] as const, registers,
    collect: async () => {
      spoofed.reset()
      for (const s of dropSeries(await lcm.drops(), d => d.spoofed ?? 0).values()) if (s.value > 0) spoofed.set({ src: s.src, dst: s.dst }, s.value)
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
