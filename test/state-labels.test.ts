// Node labels, the first user of the document: set through one agent with the CLI,
// shown by every agent (over the node's own --label values), and still there after
// every agent has been killed and started again.
import test from 'ava'
import { execFile } from 'node:child_process'
import { VGRID, waitFor, type AgentProcess } from './helpers/agent-process.ts'
import { startGrid, nodesOf, waitMembers, waitConverged } from './state-grid.ts'

function cli (a: AgentProcess, ...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise(resolve => {
    execFile(VGRID, args, { env: { ...process.env, VGRID_API: a.api }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
  })
}

const labelsEverywhere = async (agents: AgentProcess[], node: string): Promise<Array<Record<string, string> | undefined>> =>
  await Promise.all(agents.map(async a => (await nodesOf(a)).get(node)?.labels))

test('a label set through one agent is shown by every agent, also after all restart', async t => {
  const { agents } = await startGrid(t, 3, { args: i => i === 2 ? ['--label', 'zone=from-config', '--label', 'os=linux'] : [] })
  const [n0, n1] = agents as [AgentProcess, AgentProcess]

  const set = await cli(n0, 'node', 'label', 'n2', 'zone=eu-west', 'rack=r7')
  t.is(set.code, 0, set.stderr)
  t.is(set.stdout, 'n2: os=linux,rack=r7,zone=eu-west\n')
  const want = { os: 'linux', rack: 'r7', zone: 'eu-west' }
  const same = (l: Record<string, string> | undefined): boolean => l != null && Object.keys(l).length === 3 && Object.entries(want).every(([k, v]) => l[k] === v)
  await waitFor(async () => (await labelsEverywhere(agents, 'n2')).every(same), 15_000, 'every agent shows the labels')
  t.pass('the document label wins over the node\'s own --label')

  // errors are one line, with the API's code
  const cases: Array<[string[], RegExp]> = [
    [['node', 'label', 'nosuch', 'a=b'], /^vgrid: no node with id or name "nosuch" \(not_found\)\n$/],
    [['node', 'label', 'n2', 'bad key=x'], /^vgrid: label key "bad key" must be .*\(invalid_label\)\n$/],
    [['node', 'unlabel', 'n2', 'never-set'], /^vgrid: node n2 has no operator label "never-set" \(not_found\)\n$/],
    [['node', 'label', 'n2', 'novalue'], /^vgrid: "novalue" is not KEY=VALUE\nusage: /],
    [['node', 'label', 'n2', 'a=b', 'a=c'], /^vgrid: label "a" is given twice: give each key once\nusage: /],
    // in words that name the label, not the schema's "body/value" (bb20)
    [['node', 'label', 'n2', `long=${'v'.repeat(300)}`], /^vgrid: label value for "long": 300 characters, at most 256 \(invalid_label\)\n$/],
    // a key too long: the label words too, not the schema's "params/key" (bb21)
    [['node', 'label', 'n2', `${'k'.repeat(64)}=v`], /^vgrid: label key "k{64}" must be 1-63 letters.*\(invalid_label\)\n$/],
    [['node', 'unlabel', 'n2', 'k'.repeat(200)], /^vgrid: label key "k{64}\.\.\." \(200 characters\) must be 1-63 letters.*\(invalid_label\)\n$/],
    // all or nothing (bb46: the labels before a bad key were set, the keys before a missing one removed)
    [['node', 'label', 'n2', 'ok=1', 'bad key=x'], /^vgrid: label key "bad key" must be .*\(invalid_label\)\n$/],
    [['node', 'unlabel', 'n2', 'rack', 'never-set', 'nor-this'], /^vgrid: node n2 has no operator label "never-set", "nor-this": nothing was changed \(not_found\)\n$/],
    [['node', 'unlabel', 'n2', 'rack=r7'], /^vgrid: unlabel takes label keys, not KEY=VALUE: "rack"\?\nusage: /]
  ]
  for (const [args, re] of cases) {
    const r = await cli(n1, ...args)
    t.not(r.code, 0)
    t.regex(r.stderr, re)
  }
  t.true(same((await nodesOf(n1)).get('n2')?.labels), 'the refused commands changed nothing')

  // all three die at once and come back
  await Promise.all(agents.map(async a => await a.kill('SIGKILL')))
  await Promise.all(agents.map(async a => await a.start()))
  await waitMembers(agents, 3)
  t.true((await labelsEverywhere(agents, 'n2')).every(same), 'labels survive a restart of every agent')

  // unlabel: the node's own value shows through again, everywhere
  const un = await cli(n1, 'node', 'unlabel', 'n2', 'zone')
  t.is(un.code, 0, un.stderr)
  t.is(un.stdout, 'n2: os=linux,rack=r7,zone=from-config\n')
  await waitFor(async () => (await labelsEverywhere(agents, 'n2')).every(l => l?.zone === 'from-config'), 15_000, 'the unlabel spreads')
  await waitConverged(agents, 15_000)

  // vgrid state, for people and for scripts
  const human = await cli(n0, 'state')
  t.is(human.code, 0, human.stderr)
  t.regex(human.stdout, /objects +0 apps, 0 vms, 0 leases, 0 volumes, 0 connections, 1 node labels/)
  t.regex(human.stdout, /^n1 +12D3KooW\S+ +open +yes/m)
  const json = JSON.parse((await cli(n0, 'state', '--json')).stdout) as { counts: { nodeLabels: number }, heads: string[] }
  t.is(json.counts.nodeLabels, 1)
  t.true(json.heads.length >= 1)
})
