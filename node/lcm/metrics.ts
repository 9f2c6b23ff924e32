// The LCM's gauges, read when /metrics is scraped: bytes per tunnel (from `wg show
// dump`), drops per VM pair and packets per declared connection (from `nft -j`).
import { Counter, type Registry } from 'prom-client'
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

/**
 * The tunnels' and rules' counts, read at scrape time: counters (they only grow, and
 * start again from 0 when a tunnel or rule set is made anew, which `rate()` takes as a
 * reset), set to the kernel's totals at each scrape.
 */
export function registerCounters (registry: Registry, lcm: Source): void {
  const registers = [registry]
  const bytes: Counter<'peer' | 'direction'> = new Counter({
    name: 'vgrid_lcm_tunnel_bytes_total', help: 'Bytes through each WireGuard tunnel of this node, by peer node and direction', labelNames: ['peer', 'direction'] as const, registers,
    collect: async () => {
      bytes.reset()
      for (const p of await lcm.peerStates()) {
        bytes.inc({ peer: p.node ?? p.publicKey, direction: 'rx' }, p.rxBytes)
        bytes.inc({ peer: p.node ?? p.publicKey, direction: 'tx' }, p.txBytes)
      }
    }
  })
  const drops: Counter<'src' | 'dst'> = new Counter({
    name: 'vgrid_lcm_drops_total', help: `Packets from or to VMs dropped on this node (no declared connection), by source and destination VM (${OTHER}: any address that is no VM's)`, labelNames: ['src', 'dst'] as const, registers,
    collect: async () => {
      drops.reset()
      for (const s of dropSeries(await lcm.drops(), d => d.packets).values()) drops.inc({ src: s.src, dst: s.dst }, s.value)
    }
  })
  const spoofed: Counter<'src' | 'dst'> = new Counter({
    name: 'vgrid_lcm_spoofed_total', help: 'Of vgrid_lcm_drops_total, the packets with a forged source (a VM address that came in where it is not routed, or a VM interface\'s packet from an address that is no VM\'s)', labelNames: ['src', 'dst'] as const, registers,
    collect: async () => {
      spoofed.reset()
      for (const s of dropSeries(await lcm.drops(), d => d.spoofed ?? 0).values()) if (s.value > 0) spoofed.inc({ src: s.src, dst: s.dst }, s.value)
    }
  })
  const passed: Counter<'link'> = new Counter({
    name: 'vgrid_lcm_link_packets_total', help: 'Packets passed for each declared connection on this node', labelNames: ['link'] as const, registers,
    collect: async () => {
      passed.reset()
      const c = await lcm.counters()
      for (const f of lcm.last?.rules.flows ?? []) passed.inc({ link: f.link }, c.counters.get(f.counter)?.packets ?? 0)
    }
  })
}
