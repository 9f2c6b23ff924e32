// `vgrid status` and `vgrid nodes`: the pool and its members as the local agent sees them.
import { parse, API_OPTION, JSON_OPTION } from '../args.ts'
import { sayLabels } from '../format.ts'
import { ApiClient } from '../client.ts'
import { bytes, num, shortId, table } from '../format.ts'
import type { NodesView, NodeView, StatusView } from '../../api/types.ts'
import { haLines } from '../../dvmm/cli.ts'
import { offsetText } from '../../membership/views.ts'
import { escapeControls } from '../../dvmm/control-chars.ts'

export async function status (argv: string[]): Promise<void> {
  const { values: v } = parse(argv, { ...API_OPTION, ...JSON_OPTION }, 'vgrid status [--json] [--api HOST:PORT]')
  const s = await new ApiClient(v.api as string | undefined).get<StatusView>('/v1/status')
  if (v.json === true) {
    process.stdout.write(JSON.stringify(s, null, 2) + '\n')
    return
  }
  const m = s.members
  const p = s.pool
  process.stdout.write([
    `node     ${s.node.name} (${s.node.id})`,
    `cluster  ${s.node.cluster}`,
    `members  ${m.alive} alive, ${m.suspect} suspect, ${m.dead} dead, ${m.left} left${(m.unseen ?? 0) > 0 ? `, ${m.unseen!} unseen (on the roll, not heard from since this agent started)` : ''}`,
    `health   ${s.health.ok ? 'ok' : `degraded: ${s.health.problems.length} problem(s)`}`,
    ...s.health.problems.map(h => `  ${h.service} ${h.cause}${h.since != null ? ` since ${h.since}` : ''}: ${escapeControls(h.message)}`),
    // the VM manager's HA check, as `vgrid ha` says it (none where the agent runs no VM manager)
    ...s.ha == null ? [] : haLines(s.ha).map((l, i) => i === 0 ? `ha       ${l.replace(/^HA /, '')}` : l),
    '',
    table(['POOL', 'TOTAL', 'FREE'], [
      ['cpu', num(p.cpu.total), num(p.cpu.free)],
      ['memory', bytes(p.memoryBytes.total), bytes(p.memoryBytes.free)],
      ['disk', bytes(p.diskBytes.total), bytes(p.diskBytes.free)]
    ])
  ].join('\n') + '\n')
}

export async function nodes (argv: string[]): Promise<void> {
  const { values: v } = parse(argv, { ...API_OPTION, ...JSON_OPTION }, 'vgrid nodes [--json] [--api HOST:PORT]')
  const res = await new ApiClient(v.api as string | undefined).get<NodesView>('/v1/nodes')
  if (v.json === true) {
    process.stdout.write(JSON.stringify(res, null, 2) + '\n')
    return
  }
  const addr = (n: NodeView): string => (n.addrs.find(a => !a.startsWith('/ip4/127.')) ?? n.addrs[0] ?? '-').replace(/\/p2p\/.*$/, '')
  // e.g. "tcg,cgroup-v1,fence-5s": how this node runs VMs, and how long its VMs take to move when it dies
  const vmHost = (n: NodeView): string => [
    ...(n.vmHost != null ? vmHostParts(n.vmHost) : []),
    ...(n.fenceTimeoutMs != null ? [`fence-${num(n.fenceTimeoutMs / 1000)}s`] : [])
  ].join(',') || '-'
  const labels = (n: NodeView): string => sayLabels(n.labels) || '-'
  process.stdout.write(table(
    // VM HOST: how it runs VMs (accelerator, cgroups, fence), not how many (bb21 read a count)
    ['NAME', 'STATE', 'CPU FREE/TOTAL', 'MEMORY FREE/TOTAL', 'DISK FREE/TOTAL', 'LOAD', 'VM HOST', 'ADDRESS', 'ID', 'LABELS'],
    res.nodes.map(n => {
      // a member not alive has nothing free (its last advert's figures are of when it was): '-'
      const up = n.state === 'alive' || n.state === 'suspect'
      const free = (v: string): string => up ? v : '-'
      return [
        n.name + (n.self ? '*' : ''),
        n.state + (n.draining === true ? ',draining' : '') + (n.restarting != null ? ',restarting' : '') + (n.clock?.over === true ? `,clock${offsetText(n.clock.offsetMs).replace(' ', '')}` : '') + (n.outOfReach != null ? ',out-of-reach' : '') + (n.state === 'alive' && n.inSight === false ? ',out-of-sight' : '') + (n.overlayDown != null ? ',overlay-down' : '') + (n.dataDiskFull != null ? ',disk-full' : ''),
        `${free(num(n.free.cpu))}/${num(n.capacity.cpu)}`,
        `${free(bytes(n.free.memoryBytes))}/${bytes(n.capacity.memoryBytes)}`,
        `${free(bytes(n.free.diskBytes))}/${bytes(n.capacity.diskBytes)}`,
        up ? num(n.load[0] ?? 0) : '-',
        vmHost(n),
        addr(n),
        shortId(n.id),
        labels(n)
      ]
    }).concat((res.unseen ?? []).map(u => [u.name, 'unseen', '-', '-', '-', '-', '-', '-', shortId(u.id), '-']))
  ) + '\n' + ((res.unseen ?? []).length > 0 ? '\nunseen: on the grid\'s roll, not heard from since this agent started (counted as down for the majority); bring it back, or `vgrid node forget NAME` if it is gone for good\n' : ''))
}

/**
 * The VM HOST column's accelerator and cgroups, or that the node runs no VM at all
 * (bb42: a node whose drivers were all left out still showed "tcg,cgroup-v1"); a driver
 * left out is named (an agent of an earlier release sends no driver list).
 */
export function vmHostParts (h: NonNullable<NodeView['vmHost']>): string[] {
  const drivers = h.drivers as string[] | undefined
  if (drivers == null) return [h.accel ?? 'no-qemu', `cgroup-${h.cgroup}`]
  if (drivers.length === 0) return ['no-vm-driver']
  return [drivers.includes('qemu') ? h.accel ?? 'no-qemu' : 'no-qemu', `cgroup-${h.cgroup}`, ...(drivers.includes('process') ? [] : ['no-process'])]
}
