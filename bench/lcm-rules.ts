// What a node's link rules cost per forwarded packet, by how many links it enforces:
// two "VM" namespaces routed through a "node" namespace (as test/lcm/rules.test.ts
// builds it), the node holding the ruleset of rules.ts for 2, 1,000 and 5,000 links
// (the measured flow's link sorting last), and none at all. iperf3 sends 64-byte UDP
// datagrams as fast as it can from one VM to the other through a declared link; the
// datagrams received per second are compared with the same path without a table,
// measured in the same run (the ratio is what a 2-core machine's noise leaves
// comparable). Rules the node checks one by one would fall with the link count
// (measured with one rule per link: 9.8k datagrams/s at 5,000 links); the flow maps
// keep it flat.
// Run as root: node_modules/node/bin/node bench/lcm-rules.ts [--seconds 3] [--rounds 2]
import { spawn, execFile } from 'node:child_process'
import { parseArgs, promisify } from 'node:util'
import { checkSupport, createNamespace, deleteNamespace, sleep, which } from '../node/netns/netns.ts'
import { computeRuleset, type Link, type VmPlace } from '../node/lcm/rules.ts'
import { applyRuleset, removeRuleset } from '../node/lcm/nft.ts'
import { KIND, onInterrupt, offInterrupt } from '../test/harness/grid.ts'
import { routeThrough } from '../test/lcm/ns.ts'
import { printTable } from './cluster.ts'

const { values: opts } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, rounds: { type: 'string', default: '2' } } })
const SECONDS = Number(opts.seconds)
const ROUNDS = Number(opts.rounds)
const support = checkSupport({ nft: true })
if (!support.ok) { console.error(`bench/lcm-rules: ${support.reason}`); process.exit(2) }
if (which('iperf3') == null) { console.error('bench/lcm-rules: iperf3 not found (test/run.sh installs it)'); process.exit(2) }

const names = ['node', 'vm1', 'vm2'].map(n => `${KIND}-${process.pid}-r${n}`)
const [NODE, VM1, VM2] = names as [string, string, string]
const PREFIX = '100.80.0.0/16'
const A1 = '100.80.0.1'
const A2 = '100.80.0.2'
const TABLE = 'vgrid_lcm_bench'
const mine = {
  stop: async () => { for (const n of names) await deleteNamespace(n) },
  stopSync: () => { for (const n of names) spawn(which('ip')!, ['netns', 'del', n], { stdio: 'ignore' }) }
}

async function topology (): Promise<void> {
  for (const n of names) await createNamespace(n)
  await routeThrough(NODE, [{ ns: VM1, dev: 'vgpbench1', address: A1 }, { ns: VM2, dev: 'vgpbench2', address: A2 }])
}

/** the node's ruleset with `n` links from vm1: the measured ones (udp 5201 and iperf3's control, tcp 5201, to vm2) sort last */
async function rules (n: number): Promise<void> {
  const vms: VmPlace[] = [{ vm: 'vm1', address: A1, node: 'node' }, { vm: 'vm2', address: A2, node: 'node' }]
  // iperf3's own control connection is tcp to the same port: a link of its own
  const links: Link[] = [
    { id: 'zz-measured', from: { vm: 'vm1', terminal: 'out' }, to: { vm: 'vm2', terminal: 'in' }, protocol: 'udp', port: 5201 },
    { id: 'zy-control', from: { vm: 'vm1', terminal: 'ctl' }, to: { vm: 'vm2', terminal: 'ctl' }, protocol: 'tcp', port: 5201 }
  ]
  for (let i = 2; i < n; i++) {
    vms.push({ vm: `other${i}`, address: `100.80.${1 + (i >> 8)}.${i & 255}`, node: 'elsewhere' })
    links.push({ id: `l${String(i).padStart(5, '0')}`, from: { vm: 'vm1', terminal: `o${i}` }, to: { vm: `other${i}`, terminal: 'in' }, protocol: 'udp', port: 5201 })
  }
  await applyRuleset(NODE, computeRuleset({ node: 'node', table: TABLE, vmPrefix: PREFIX, vms, links }))
}

/** 64-byte UDP datagrams per second that reached vm2 */
async function pps (): Promise<number> {
  const srv = spawn(which('ip')!, ['netns', 'exec', VM2, which('iperf3')!, '-s', '-1', '-p', '5201'], { stdio: 'ignore' })
  try {
    await sleep(300)
    const { stdout } = await promisify(execFile)(which('ip')!, ['netns', 'exec', VM1, which('iperf3')!, '-c', A2, '-p', '5201', '-u', '-b', '0', '-l', '64', '-t', String(SECONDS), '-J'], { timeout: (SECONDS + 20) * 1000 })
    const j = JSON.parse(stdout) as { error?: string, end?: { sum?: { packets: number, lost_packets: number, seconds: number } } }
    const s = j.end?.sum
    if (j.error != null || s == null) throw new Error(`iperf3: ${j.error ?? 'no result'}`)
    return (s.packets - s.lost_packets) / s.seconds
  } finally {
    if (srv.exitCode == null) srv.kill('SIGKILL')
  }
}

const median = (xs: number[]): number => { const v = [...xs].sort((a, b) => a - b); const m = v.length >> 1; return v.length % 2 === 1 ? v[m]! : (v[m - 1]! + v[m]!) / 2 }

onInterrupt(mine)
try {
  await topology()
  const cases = [0, 2, 1000, 5000]
  const got = new Map<number, number[]>(cases.map(c => [c, []]))
  for (let r = 0; r < ROUNDS; r++) {
    for (const n of r % 2 === 0 ? cases : [...cases].reverse()) {
      if (n === 0) await removeRuleset(NODE, TABLE)
      else await rules(n)
      got.get(n)!.push(await pps())
      console.error(`round ${r + 1}: ${n} links ${Math.round(got.get(n)!.at(-1)!)} datagrams/s`)
    }
  }
  const base = median(got.get(0)!)
  const k = (x: number): string => `${(x / 1000).toFixed(1)}k/s`
  printTable(cases.map(n => n === 0
    ? ['no table: forwarding alone', k(base), '', '', `samples ${got.get(0)!.map(k).join(' ')}`]
    : [`${n} links on the node`, k(median(got.get(n)!)), k(base), (median(got.get(n)!) / base).toFixed(2), `samples ${got.get(n)!.map(k).join(' ')}`]))
  console.log(`64-byte UDP datagrams received per second through a node's link rules (medians of ${ROUNDS} rounds of ${SECONDS} s); the ratio should not fall with the links`)
} finally {
  await mine.stop()
  offInterrupt(mine)
}
process.exit(0)
