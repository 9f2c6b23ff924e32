// `vgrid vm update` of a VM's terminals (node/dvmm/vm-update.ts, update-cli.ts): the
// whole new lists checked as a create checks them, changed at any time (a running VM's
// names are re-pointed as links come and go), and a terminal a link uses taken away only
// once the link is.
import test from 'ava'
import { changeSummary, runsForUpdate, terminalInUse, vmUpdateOf } from '../../node/dvmm/vm-update.ts'
import { terminalList } from '../../node/dvmm/update-cli.ts'
import { terminalHosts } from '../../node/lcm/links.ts'
import { computeFlows, type VmPlace } from '../../node/lcm/rules.ts'
import type { Vm } from '../../crdt/index.ts'
import type { NodeView } from '../../crdt/placement/index.ts'
import { ValidationError } from '../../node/errors.ts'
import { CliError } from '../../node/cli/client.ts'

const MiB = 2 ** 20
const NODES: NodeView[] = [{ id: 'a', name: 'a', alive: true, draining: false, capacity: { cpu: 4, memoryBytes: 8 * 2 ** 30 }, labels: {} }]
const web = (extra: Partial<Vm['spec']> = {}): Pick<Vm, 'spec'> => ({ spec: { driver: 'process', cpu: 1, memoryBytes: 64 * MiB, volumes: [], constraints: {}, command: ['/bin/sleep', '60'], inputs: ['http'], outputs: ['db'], ...extra } })

test('terminals: whole new lists, null or [] for none; one in both, twice, or not a name is a 400 naming it', t => {
  const u = vmUpdateOf({ inputs: ['http', 'admin'], outputs: ['db', 'cache'] }, web(), NODES)
  t.deepEqual(u.changed, ['inputs', 'outputs'])
  t.like(u.spec, { inputs: ['http', 'admin'], outputs: ['db', 'cache'] })
  // none is kept as [], "declares none": an absent list is a VM's from before terminals,
  // which has those its links use, and the link rules would not hold it to none (rv57)
  const none = vmUpdateOf({ outputs: null, inputs: [] }, web(), NODES)
  t.deepEqual(none.changed, ['inputs', 'outputs'])
  t.like(none.spec, { inputs: [], outputs: [] })
  t.deepEqual(vmUpdateOf({ inputs: ['http'] }, web(), NODES).changed, [], 'already so')
  t.deepEqual(vmUpdateOf({ inputs: [] }, web({ inputs: undefined }), NODES).changed, [], 'none is none, absent or empty')
  // one it has keeps its spelling: links name it so (rv57: outputs ["DB"] left a link of db carrying nothing)
  const cased = vmUpdateOf({ outputs: ['DB', 'Cache'] }, web(), NODES)
  t.deepEqual(cased.spec.outputs, ['db', 'Cache'])
  const bad = (body: unknown, field: string, msg: RegExp): void => {
    const err = t.throws(() => vmUpdateOf(body, web(), NODES), { instanceOf: ValidationError })
    t.is((err as ValidationError & { field: string }).field, field, String(err?.message))
    t.regex(err!.message, msg)
  }
  bad({ inputs: ['DB'] }, 'outputs', /"DB" is an input too: a terminal is an input or an output/)
  bad({ outputs: ['db', 'Db'] }, 'outputs[1]', /"Db" is listed twice/)
  bad({ inputs: ['1x'] }, 'inputs[0]', /"1x" is not a terminal name/)
  bad({ inputs: ['localhost'] }, 'inputs[0]', /"localhost" cannot be a terminal/)
  bad({ outputs: 'db' }, 'outputs', /must be an array of at most 64 terminal names/)
})

test('terminals change while the VM runs (not a field that waits for a stop), and the history says how', t => {
  t.false(runsForUpdate(['inputs', 'outputs'], { status: 'running', own: true }))
  t.true(runsForUpdate(['inputs', 'memory'], { status: 'running', own: true }))
  const u = vmUpdateOf({ outputs: ['db', 'cache'], inputs: null }, web(), NODES)
  t.is(changeSummary(web().spec, u.spec, u.changed), 'inputs http -> none; outputs db -> db, cache')
})

test('terminalInUse: a terminal a link of this VM uses goes only with the link; a former VM\'s links of the name do not count', t => {
  const links = [
    { id: 'link-1', from: { vm: 'web', terminal: 'db', created: 5 }, to: { vm: 'pg', terminal: 'sql', created: 3 } },
    { id: 'link-2', from: { vm: 'lb', terminal: 'app' }, to: { vm: 'web', terminal: 'http' } }
  ]
  t.is(terminalInUse('web', 5, { inputs: ['http'], outputs: ['db', 'cache'] }, links), null)
  t.is(terminalInUse('web', 5, { inputs: ['http'], outputs: ['cache'] }, links), 'output terminal "db" of VM "web" is used by link link-1 (web.db -> pg.sql): remove the link first (vgrid link rm link-1), then the terminal')
  t.regex(terminalInUse('web', 5, { outputs: ['db'] }, links) ?? '', /^input terminal "http" of VM "web" is used by link link-2 \(lb\.app -> web\.http\)/)
  t.is(terminalInUse('web', 5, { inputs: ['HTTP'], outputs: ['DB'] }, links), null, 'names are host names: case does not count')
  t.is(terminalInUse('web', 9, { inputs: ['http'] }, links), null, 'link-1 was made for a former VM named web')
  t.is(terminalInUse('pg', 3, { inputs: ['sql'] }, links), null)
})

test('terminalList: the CLI\'s --input/--rm-input made into the whole new list from the one the VM has', t => {
  t.deepEqual(terminalList('web', ['http'], ['admin'], [], 'input'), ['http', 'admin'])
  t.deepEqual(terminalList('web', ['http', 'admin'], [], ['HTTP'], 'input'), ['admin'])
  t.deepEqual(terminalList('web', ['http'], ['Http'], [], 'input'), ['http'], 'one it has already is kept as it is')
  const both = t.throws(() => terminalList('web', [], ['a'], ['a'], 'output'), { instanceOf: CliError })
  t.is(both?.message, '--output a and --rm-output a: give one of them')
  const missing = t.throws(() => terminalList('web', ['db'], [], ['dbx'], 'output'), { instanceOf: CliError })
  t.is(missing?.message, '--rm-output dbx: VM web has no output terminal dbx (its outputs: db)')
  t.is(missing?.exitCode, 2, 'a bad value')
  t.regex(t.throws(() => terminalList('web', [], [], ['x'], 'input'))?.message ?? '', /\(it has no inputs\)$/)
})

test('terminalHosts: an output the VM no longer declares names nothing inside it (its link carries nothing)', t => {
  const links = [{ id: 'l1', from: { vm: 'web', terminal: 'db' }, to: { vm: 'pg', terminal: 'sql' }, protocol: 'tcp' as const, port: 5432 }]
  const at = (vm: string): string | null => vm === 'pg' ? '100.64.0.9' : null
  t.deepEqual(terminalHosts('web', links, at), { db: '100.64.0.9' }, 'a VM from before terminals: those its links use')
  t.deepEqual(terminalHosts('web', links, at, ['db']), { db: '100.64.0.9' })
  t.deepEqual(terminalHosts('web', links, at, []), {})
})

test('a link made through another node as its output was taken away (both answered 200) carries nothing once the update merges: none declared is [], not absent (rv57)', t => {
  const link = { id: 'l1', from: { vm: 'web', terminal: 'db' }, to: { vm: 'pg', terminal: 'sql' }, protocol: 'tcp' as const, port: 5432 }
  const place = (outputs: string[] | undefined): VmPlace[] => [{ vm: 'web', address: '100.70.128.2', node: 'n1', ...(outputs != null ? { outputs } : {}) }, { vm: 'pg', address: '100.70.128.3', node: 'n2', inputs: ['sql'] }]
  const removed = vmUpdateOf({ outputs: [] }, web({ outputs: ['db'] }), NODES).spec.outputs
  t.deepEqual(removed, [])
  const r = computeFlows({ node: 'n1', vmPrefix: '100.70.128.0/17', vms: place(removed), links: [link] })
  t.deepEqual(r.skipped, [{ link: 'l1', reason: 'VM web has no output terminal "db"' }])
  t.is(computeFlows({ node: 'n1', vmPrefix: '100.70.128.0/17', vms: place(undefined), links: [link] }).flows.length, 1, 'absent: a VM from before terminals, held to nothing')
})
