// Failover with real agents in network namespaces (test/harness): a VM's holder has
// its agent killed with SIGKILL while its server runs on. How long until the VM runs
// on another host, split into
//   detection  kill -> the first other host declares the holder dead,
//   fence wait dead -> the takeover claim (fence timeout + margin from last heard),
//   start      claim -> the VM's process runs (qemu: and its guest says ready),
// for a `process` VM and a `qemu` guest; and for the process VM, how long until its
// declared link carries traffic again, and (first) from its start to its link
// carrying traffic. Baseline in the same run: the fence timeout + margin the design
// waits on purpose (the floor of any fenced failover). Target: process VM under 10 s.
// Run as root: node_modules/node/bin/node bench/failover.ts [--runs 2] [--no-qemu]
import { parseArgs } from 'node:util'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { Grid, type Host } from '../test/harness/grid.ts'
import { checkSupport } from '../node/netns/netns.ts'
import { nodeBin } from '../node/netns/processes.ts'
import { buildGuestImage } from '../node/dvmm/image/build.ts'
import type { VmDetail } from '../node/dvmm/vms.ts'
import type { NodeView } from '../node/api/types.ts'
import { printTable } from './cluster.ts'

const { values: opts } = parseArgs({ options: { runs: { type: 'string', default: '2' }, 'no-qemu': { type: 'boolean', default: false } } })
const support = checkSupport({ nft: true })
if (!support.ok) { console.error(`bench/failover: ${support.reason}`); process.exit(2) }
const RUNS = Number(opts.runs)
const FENCE_MS = 5000 // node/agent.ts
const MARGIN_MS = 1500 // DVMM's takeover margin
// the server says when it listens; the client VM tries the link every 20 ms and says when it starts and stops working
const ECHO = "require('node:net').createServer(s => s.pipe(s)).listen(5432, '0.0.0.0', () => console.log('listening ' + Date.now()))"
const PROBE = "const net = require('node:net'); let up = null; const say = (ok) => { if (up !== ok) { up = ok; console.log((ok ? 'ok ' : 'fail ') + Date.now()) } }; " +
  "setInterval(() => { const s = net.connect(5432, 'db'); s.setTimeout(300); s.on('connect', () => { say(true); s.destroy() }); s.on('error', () => say(false)); s.on('timeout', () => { say(false); s.destroy() }) }, 20)"
/** the times a console says `word TIME` */
const said = (console: string, word: string): number[] => [...console.matchAll(new RegExp(`^${word} (\\d+)$`, 'gm'))].map(m => Number(m[1]))

async function until<T> (ms: number, f: () => Promise<T | undefined | false>): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = await f().catch(() => undefined)
    if (v !== undefined && v !== false) return v
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

const show = async (via: Host, vm: string): Promise<VmDetail> => await via.api<VmDetail>(`/v1/vms/${vm}`)

interface Split { detection: number, fence: number, start: number, ready: number, traffic?: number, firstTraffic?: number, afterUp?: number }

async function oneRun (kind: 'process' | 'qemu', image?: { kernel: string, initrd: string, cmdline: string }): Promise<Split> {
  const grid = await Grid.start(undefined, {
    hosts: [{ name: 'h1', args: ['--label', 'role=web'] }, { name: 'h2', args: ['--label', 'role=db'] }, { name: 'h3', args: ['--label', 'role=db'] }],
    args: ['--capacity', 'cpu=2,mem=2G,disk=10G']
  })
  try {
    await grid.waitAllAlive(30_000)
    const h1 = grid.host('h1')
    const spec = kind === 'process'
      ? { driver: 'process', cpu: 0.25, memory: '96M', command: [nodeBin(), '-e', ECHO] }
      : { driver: 'qemu', cpu: 1, memory: '128M', kernel: image!.kernel, initrd: image!.initrd, cmdline: image!.cmdline }
    await h1.api('/v1/vms', 'POST', { name: 'db', constraints: { role: 'db' }, inputs: ['in'], ...spec })
    let firstTraffic: number | undefined
    const webConsole = async (): Promise<string> => (await h1.api<{ console: string }>('/v1/vms/web/console')).console
    if (kind === 'process') {
      await h1.api('/v1/vms', 'POST', { name: 'web', driver: 'process', cpu: 0.25, memory: '96M', constraints: { role: 'web' }, outputs: ['db'], command: [nodeBin(), '-e', PROBE] })
      await h1.api('/v1/links', 'POST', { from: 'web.db', to: 'db.in', protocol: 'tcp', port: 5432 })
      await until(60_000, async () => (await show(h1, 'web')).runtime?.state === 'running')
    }
    const first = await until(120_000, async () => { const d = await show(h1, 'db'); return d.state === 'running' && d.node != null ? d : undefined })
    const holder = grid.host(first.node!)
    if (kind === 'process') {
      const listening = await until(20_000, async () => said((await holder.api<{ console: string }>('/v1/vms/db/console')).console, 'listening')[0])
      const ok = await until(20_000, async () => said(await webConsole(), 'ok').find(t => t >= listening))
      firstTraffic = ok - listening
    } else {
      await until(120_000, async () => (await holder.api<{ console: string }>('/v1/vms/db/console')).console.includes('vgrid-guest: ready'))
    }
    const others = grid.list.filter(h => h !== holder && h.agent.running)
    const killAt = Date.now()
    await holder.kill()
    const deadAt = await until(60_000, async () => {
      for (const o of others) if ((await o.api<{ nodes: NodeView[] }>('/v1/nodes')).nodes.find(n => n.name === holder.name)?.state === 'dead') return Date.now()
      return undefined
    })
    const moved = await until(60_000, async () => { const d = await show(h1, 'db'); return d.state === 'running' && d.node != null && d.node !== holder.name ? d : undefined })
    const taker = grid.host(moved.node!)
    const d = await until(30_000, async () => { const x = await show(taker, 'db'); return x.runtime?.startedAt != null ? x : undefined })
    const claimAt = Date.parse(d.history.filter(e => e.event === 'failed-over').at(-1)?.at ?? '')
    const startAt = d.runtime!.startedAt!
    let readyAt = startAt
    let traffic: number | undefined
    let afterUp: number | undefined
    if (kind === 'qemu') readyAt = await until(120_000, async () => (await taker.api<{ console: string }>('/v1/vms/db/console')).console.includes('vgrid-guest: ready') ? Date.now() : undefined)
    else {
      const listening = await until(30_000, async () => said((await taker.api<{ console: string }>('/v1/vms/db/console')).console, 'listening')[0])
      const ok = await until(30_000, async () => said(await webConsole(), 'ok').find(t => t >= listening))
      traffic = ok - killAt
      afterUp = ok - listening
    }
    return { detection: deadAt - killAt, fence: claimAt - deadAt, start: startAt - claimAt, ready: readyAt - killAt, traffic, firstTraffic, afterUp }
  } finally {
    await grid.stop()
  }
}

const s = (ms: number | undefined): string => ms == null || Number.isNaN(ms) ? '-' : `${(ms / 1000).toFixed(2)} s`
const median = (xs: number[]): number => { const v = [...xs].sort((a, b) => a - b); return v[Math.floor(v.length / 2)]! }
const rows: string[][] = []
const floor = FENCE_MS + MARGIN_MS
for (const kind of ['process', 'qemu'] as const) {
  if (kind === 'qemu' && opts['no-qemu'] === true) continue
  let image
  if (kind === 'qemu') {
    try { image = buildGuestImage(join(tmpdir(), 'vgrid-e2e-images')) } catch (err) { console.error(`qemu skipped: ${(err as Error).message}`); continue }
  }
  const runs: Split[] = []
  for (let i = 0; i < RUNS; i++) {
    const r = await oneRun(kind, image)
    runs.push(r)
    console.error(`${kind} run ${i + 1}: ${JSON.stringify(r)}`)
  }
  const m = (k: keyof Split): number => median(runs.map(r => r[k] as number))
  rows.push(
    [`${kind}: detection (kill -> dead)`, s(m('detection')), '', '', 'membership: about 3 s'],
    [`${kind}: fence wait (dead -> claim)`, s(m('fence')), '', '', `fence ${FENCE_MS / 1000} s + margin ${MARGIN_MS / 1000} s from last heard`],
    [`${kind}: start (claim -> running)`, s(m('start')), '', '', 'settle window, then the driver'],
    [`${kind}: kill -> ${kind === 'qemu' ? 'guest ready' : 'running'}`, s(m('ready')), s(floor), (m('ready') / floor).toFixed(2), kind === 'process' ? `target < 10 s: ${m('ready') < 10_000 ? 'ok' : 'MISSED'}` : 'TCG guest boot included'])
  if (kind === 'process') {
    rows.push(
      ['process: kill -> link carries traffic', s(m('traffic')), s(floor), (m('traffic') / floor).toFixed(2), 'from the client VM, by terminal name'],
      ['process: VM up -> link carries traffic', s(m('firstTraffic')), '', '', `server listening -> client through; target < 1 s: ${m('firstTraffic') < 1000 ? 'ok' : 'MISSED'}`],
      ['process: moved VM up -> traffic again', s(m('afterUp')), '', '', 'on the new holder: server listening -> client through'])
  }
}
console.log(`failover with real agents in namespaces, median of ${RUNS} run(s); baseline: fence timeout + margin`)
printTable(rows)
process.exit(0)
