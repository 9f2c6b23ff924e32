// The `vgrid vm` commands and `vgrid ha`/`status` against an agent (a stub answering as
// an older one would) whose document holds a reason with a guest's raw output in it:
// colour codes, a window title and newlines. None reaches the terminal as such, and a
// `vm ls` row stays one line (a tester's broke). `vm create --kernel --image` is
// refused before the API is asked.
import test from 'ava'
import { createServer, type Server } from 'node:http'
import { runCli } from '../helpers/cli-run.ts'
import { scoreParts } from '../../node/dvmm/cli.ts'

/** what the tester's guest printed, with a C1 CSI besides */
const GUEST = '\u001b[31mRED\u001b]0;TITLE\u0007\nline2\r\n\u009b2J'
const REASON = `start failed: driver process: it ended at once with status 0: ${GUEST}`
/** control characters (C0 but the line breaks the CLI writes, DEL, C1) */
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/

const row = { id: 'esc1', name: 'esc1', app: null, desired: 'running', state: 'failed', node: 'h1', nodeId: 'n1', epoch: 1, cpu: 0.1, memoryBytes: 16 * 2 ** 20, driver: 'process', reason: REASON }
const detail = {
  ...row,
  address: null,
  runtime: null,
  spec: { driver: 'process', cpu: 0.1, memoryBytes: 16 * 2 ** 20, volumes: [], constraints: {}, command: ['/bin/sh'] },
  disks: [],
  lease: null,
  claims: 1,
  placement: { vm: 'esc1', nodes: [{ node: 'n1', name: 'h1', filtered: { check: 'drivers', reason: `said ${GUEST}` } }] },
  decision: null,
  history: [{ at: '2024-01-01T00:00:00.000Z', event: 'failed', node: 'h1', detail: REASON }],
  historyUnreadable: 0
}
/** a reason as the agent writes it: a guest's (QEMU's) two lines, the line break escaped */
const LOCKED = { ...detail, id: 'lock', name: 'lock', reason: 'start failed: driver qemu: it ended at once with status 1: qemu-system-x86_64: Failed to get "write" lock\\nIs another process using the image [/x]?' }
const ha = { ok: false, stranded: [], unplaced: [{ vm: 'esc1', reason: `no node fits: ${GUEST}` }] }
const status = {
  node: { id: 'n1', name: 'h1', version: '0', cluster: 'c', addrs: [] },
  members: { alive: 1, suspect: 0, dead: 0, left: 0 },
  pool: { cpu: { total: 1, free: 1 }, memoryBytes: { total: 2 ** 30, free: 2 ** 30 }, diskBytes: { total: 2 ** 30, free: 2 ** 30 } },
  health: { ok: true, problems: [] },
  ha
}

let server: Server
let api = ''
const asked: string[] = []

test.before(async () => {
  server = createServer((req, res) => {
    asked.push(`${req.method!} ${req.url!}`)
    req.resume()
    const answer = req.url === '/v1/vms' && req.method === 'GET'
      ? { vms: [row] }
      : req.url === '/v1/vms' || req.url === '/v1/vms/esc1' ? detail : req.url === '/v1/vms/lock' ? LOCKED : req.url === '/v1/ha' ? ha : req.url === '/v1/status' ? status : undefined
    res.writeHead(answer == null ? 404 : 200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(answer ?? { error: { code: 'not_found', message: 'no such route' } }))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  api = `127.0.0.1:${(server.address() as { port: number }).port}`
})
async function vgrid (...args: string[]): Promise<{ code: number | null, out: string, err: string }> {
  const r = await runCli(args, { VGRID_API: api })
  return { code: r.code, out: r.stdout, err: r.stderr }
}

test.after.always(async () => { await new Promise(resolve => server.close(resolve)) })


test.serial('vm ls: a reason with control characters is shown escaped, its row one line', async t => {
  const r = await vgrid('vm', 'ls')
  t.is(r.code, 0, r.err)
  t.false(CONTROL.test(r.out), JSON.stringify(r.out))
  const lines = r.out.trimEnd().split('\n')
  t.is(lines.length, 2, r.out)
  // its first line, and where the rest is (bb27: a row of escaped usage text)
  t.true(lines[1]!.endsWith('status 0: \\x1b[31mRED\\x1b]0;TITLE\\x07 ... (all of it: vgrid vm show esc1)'), lines[1])
  // JSON: the value as the document has it, no control character in the text
  const j = await vgrid('vm', 'ls', '--json')
  t.false(CONTROL.test(j.out), JSON.stringify(j.out))
  t.is((JSON.parse(j.out) as { vms: Array<{ reason: string }> }).vms[0]!.reason, REASON)
})

test.serial('vm show, vm create, ha and status: no control character reaches the terminal', async t => {
  for (const args of [['vm', 'show', 'esc1'], ['vm', 'create', 'esc1', '--cpu', '0.1', '--memory', '16M', '--', '/bin/sh', '-c', 'exit 0'], ['ha'], ['status']]) {
    const r = await vgrid(...args)
    t.false(CONTROL.test(r.out), `${args.join(' ')}: ${JSON.stringify(r.out)}`)
    t.true(r.out.includes('\\x1b[31mRED'), `${args.join(' ')}: ${r.out}`)
  }
  const show = (await vgrid('vm', 'show', 'esc1')).out
  t.regex(show, /^esc1: failed \(start failed: .*\\nline2\\r\\n\\x9b2J\)$/m)
  t.regex(show, /^ {2}h1: filtered by drivers: said \\x1b/m)
  t.regex(show, /^ {2}2024-01-01T00:00:00.000Z {2}failed on h1: start failed: .*\\x07\\nline2/m)
})

test.serial('vgrid ha exits 1 when HA is not ok, with --json as without (bb49: 0 with --json)', async t => {
  t.is((await vgrid('ha')).code, 1)
  const j = await vgrid('ha', '--json')
  t.is(j.code, 1, j.err)
  t.false(JSON.parse(j.out).ok)
})

test.serial('vm show: a reason\'s escaped line breaks are lines of their own (bb46: "lock\\nIs another process")', async t => {
  const show = (await vgrid('vm', 'show', 'lock')).out
  t.regex(show, /^lock: failed \(start failed: driver qemu: it ended at once with status 1: qemu-system-x86_64: Failed to get "write" lock\n {4}Is another process using the image \[\/x\]\?\)\n/)
})

test.serial('vm create: --kernel with --image (and an initrd without a kernel) is refused before the API is asked', async t => {
  asked.length = 0
  const both = await vgrid('vm', 'create', 'q6', '--cpu', '1', '--memory', '256M', '--kernel', '/etc/passwd', '--image', '/etc/passwd')
  t.is(both.code, 2)
  t.regex(both.err, /^vgrid: give --kernel \(with --initrd, --cmdline\) or --image, not both\nusage: /)
  const initrd = await vgrid('vm', 'create', 'q6', '--cpu', '1', '--memory', '256M', '--image', '/etc/passwd', '--initrd', '/etc/passwd')
  t.is(initrd.code, 2)
  t.regex(initrd.err, /--initrd goes with --kernel/)
  const cmd = await vgrid('vm', 'create', 'q6', '--cpu', '1', '--memory', '256M', '--kernel', '/etc/passwd', '--', '/bin/true')
  t.is(cmd.code, 2)
  t.regex(cmd.err, /a command runs a process VM, --kernel is for a qemu VM/)
  t.deepEqual(asked, [])
})

test('a node\'s score shows the parts it sums, each with its weight (bb46: -999.273 from fit 0.727 and anti-affinity -1)', t => {
  t.is(scoreParts({ fit: 0.727, antiAffinity: -1, reach: 0, overlay: 0 }), 'anti-affinity -1 x 1000, fit 0.727')
  t.is(scoreParts({ fit: 0.5, antiAffinity: 0, reach: -1, overlay: -1 }), 'overlay -1 x 1e9, reach -1 x 1e6, fit 0.500')
  t.is(scoreParts({ fit: 0.25 }), 'fit 0.250')
})
