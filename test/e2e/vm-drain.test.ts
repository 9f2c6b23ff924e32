// Drain and the HA check through the CLI of real agents in network namespaces, with
// `process` VMs sized against the nodes' capacity (3 nodes of 2 cpu, VMs of 0.6 cpu,
// so no node takes all four):
// - `vgrid node drain NODE --wait` moves every VM off the node, printing each move; a
//   moved VM is stopped (gracefully: its own "stop" record) before it starts elsewhere;
// - the drained node gets no new VM: one that fits only there stays pending, and its
//   placement shows the node filtered as draining; `vgrid node undrain` makes the node
//   schedulable and the VM is placed on it;
// - `vgrid ha` (and /v1/status) says HA ok while every VM could move, and names the
//   node whose loss would strand that VM once no other node has room for it.
import { join } from 'node:path'
import { e2e, Grid, secs, type Host } from '../harness/index.ts'
import { describeRuns, overlaps, recordingCommand, RunLog, until } from '../harness/vm-runs.ts'
import type { VmDetail, VmRow } from '../../node/dvmm/index.ts'
import type { StatusView } from '../../node/api/types.ts'

const SMALL = ['d1', 'd2', 'd3', 'd4']

async function cli (h: Host, args: string[], code = 0): Promise<string> {
  const r = await h.vgrid(args, 120_000)
  if (r.code !== code) throw new Error(`vgrid ${args.join(' ')} on ${h.name}: exit ${r.code}, expected ${code}\n${r.stdout}${r.stderr}`)
  return r.stdout
}
const rows = async (h: Host): Promise<VmRow[]> => (JSON.parse(await cli(h, ['vm', 'ls', '--json'])) as { vms: VmRow[] }).vms

e2e('drain moves every VM off a node and keeps new ones off until undrain; vgrid ha names a VM that would be stranded', async t => {
  const grid = await Grid.start(t, { hosts: 3, args: ['--capacity', 'cpu=2,mem=1G,disk=10G'] })
  await grid.waitAllAlive(30_000)
  const log = new RunLog(join(grid.dir, 'runs.log')).watch()
  t.teardown(() => { log.stop() })
  const h1 = grid.host('h1')
  for (const name of SMALL) await cli(h1, ['vm', 'create', name, '--cpu', '0.6', '--memory', '32M', '--', ...recordingCommand(log.file)])
  await until('every VM to run once', 60_000, async () =>
    (await rows(h1)).every(r => r.state === 'running') && SMALL.every(v => log.live(v).length === 1) ? true : undefined)
  const before = new Map((await rows(h1)).map(r => [r.name, r.node!]))
  t.regex(await cli(h1, ['ha']), /^HA ok/, 'every VM could move if any one node failed')

  // drain the node that holds the most VMs (spread placement: at least 2 of 4 on 3 nodes)
  const load = (n: string): number => [...before.values()].filter(x => x === n).length
  const target = grid.list.map(h => h.name).sort((a, b) => load(b) - load(a) || (a < b ? -1 : 1))[0]!
  const moving = SMALL.filter(v => before.get(v) === target)
  const staying = SMALL.filter(v => before.get(v) !== target)
  const drainAt = Date.now()
  const progress = await cli(h1, ['node', 'drain', target, '--wait', '--timeout', '90'])
  t.log(`vgrid node drain ${target} --wait (${secs(Date.now() - drainAt)}):\n${progress.trimEnd()}`)
  t.regex(progress, new RegExp(`^${target}: draining; ${moving.length} VM\\(s\\) on it`))
  for (const v of moving) t.regex(progress, new RegExp(`^  ${v}: running on (?!${target})h\\d`, 'm'), `the progress shows where ${v} went`)
  t.regex(progress, new RegExp(`^${target}: drained; ${moving.length} VM\\(s\\) moved off it$`, 'm'))

  const after = await rows(h1)
  log.poll()
  for (const v of moving) {
    const r = after.find(x => x.name === v)!
    t.is(r.state, 'running')
    t.not(r.node, target, `${v} left ${target}`)
    const [old, next] = log.of(v)
    t.is(old?.how, 'term', `${v} was stopped gracefully on ${target}`)
    t.true(next != null && old!.endedAt! < next.startedAt, `${v}: stopped, then started on ${r.node}`)
    t.is(next?.host ?? null, r.node)
  }
  for (const v of staying) t.is(log.of(v).length, 1, `${v}, not on ${target}, kept running untouched`)
  t.false(after.some(r => r.node === target), `nothing left on ${target}`)
  // every node tells that it drains, in /v1/nodes and `vgrid nodes`
  t.regex(await cli(h1, ['nodes']), new RegExp(`^${target}\\*?\\s+alive,draining\\s`, 'm'))
  t.true((await h1.api<{ draining: boolean }>(`/v1/nodes/${target}`)).draining)

  // a VM of 1.5 cpu fits only on the drained node (the others keep at most 1.4 free): it stays pending
  const big = ['vm', 'create', 'big', '--cpu', '1.5', '--memory', '32M', '--', ...recordingCommand(log.file)]
  t.regex(await cli(h1, big), /^big: pending/)
  await new Promise(resolve => setTimeout(resolve, 4000))
  const pending = JSON.parse(await cli(h1, ['vm', 'show', 'big', '--json'])) as VmDetail
  t.is(pending.state, 'pending', `big is not placed on the drained ${target}`)
  t.regex(pending.reason ?? '', /no node fits.*draining/)
  t.like(pending.placement.nodes.find(n => n.name === target)?.filtered, { check: 'draining' })
  t.regex(await cli(h1, ['vm', 'show', 'big']), new RegExp(`${target}: filtered by draining`))
  t.is(log.of('big').length, 0)

  t.regex(await cli(h1, ['node', 'undrain', target]), new RegExp(`^${target}: schedulable`))
  t.false((await h1.api<{ draining: boolean }>(`/v1/nodes/${target}`)).draining)
  const placed = await until('big to run on the undrained node', 30_000, async () => {
    const r = (await rows(h1)).find(x => x.name === 'big')
    return r?.state === 'running' && log.live('big').length === 1 ? r : undefined
  })
  t.is(placed.node, target)
  t.is(log.live('big')[0]!.host, target)

  // now losing the undrained node would strand big: no other node has 1.5 cpu free
  const ha = await cli(h1, ['ha'], 1)
  t.log(`vgrid ha:\n${ha.trimEnd()}`)
  t.regex(ha, /^HA not ok:/)
  t.regex(ha, new RegExp(`losing ${target} strands [^(]*\\bbig\\b`))
  // vgrid status says it too
  const statusText = await cli(h1, ['status'])
  t.regex(statusText, /^ha\s+not ok:$/m)
  t.regex(statusText, new RegExp(`^  losing ${target} strands [^(]*\\bbig\\b`, 'm'))
  const status = await h1.api<StatusView>('/v1/status')
  t.false(status.ha?.ok)
  t.deepEqual(status.ha?.stranded.find(s => s.name === target)?.vms.includes('big'), true, '/v1/status says the same')
  const viaApi = await grid.host(target).api<StatusView['ha']>('/v1/ha')
  t.deepEqual(viaApi?.stranded.find(s => s.name === target)?.vms, status.ha?.stranded.find(s => s.name === target)?.vms, 'every node answers alike')
  log.poll()
  t.deepEqual(overlaps(log.runs).map(([a, b]) => `${a.vm}: ${a.host} and ${b.host}`), [], `no two runs of one VM overlap:\n${describeRuns(log.runs, drainAt)}`)
})
