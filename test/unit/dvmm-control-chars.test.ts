// A VM's own output never reaches an operator's terminal as control characters: a
// tester's guest printed colour codes, a window title and newlines, which became its
// lease's reason (a start that ended at once says what it printed) and were printed raw
// by `vm ls` (the row broke), `vm show` and `vgrid status`. The agent writes reasons
// and log details escaped; the CLI escapes what it prints (an older agent's reason).
import test from 'ava'
import { escapeControls } from '../../node/dvmm/control-chars.ts'
import { reasonCell } from '../../node/dvmm/cli.ts'
import { endedAtOnce } from '../../node/dvmm/drivers/common.ts'
import { appendLog, logged, readLog, LEASE_REASON_MAX } from '../../node/dvmm/history.ts'
import { haLines, historyLine } from '../../node/dvmm/cli.ts'
import { DvmmHealth } from '../../node/dvmm/health.ts'
import { silentLogger } from '../../node/log.ts'
import { Replica } from '../../crdt/replica.ts'
import { MIGRATIONS } from '../../crdt/genesis.ts'
import { fenced } from '../../crdt/placement/index.ts'
import { validateObject } from '../../crdt/schema.ts'
import type { Lease } from '../../crdt/index.ts'
import type { HaReport } from '../../crdt/placement/index.ts'
import type { MemberTable } from '../../protocol/membership.ts'

/** what the tester's guest printed: printf "\033[31mRED\033]0;TITLE\007\nline2\r\n" */
const GUEST = '\u001b[31mRED\u001b]0;TITLE\u0007\nline2\r\n'
/** C0, DEL, C1 (as a label value may not hold: crdt/schema.ts) */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

test('escapeControls: control characters (C0, DEL, C1) shown as escapes, a lone surrogate as U+FFFD, the rest as it is', t => {
  t.is(escapeControls(GUEST), '\\x1b[31mRED\\x1b]0;TITLE\\x07\\nline2\\r\\n')
  t.is(escapeControls('a\tb\u0000c\u007fd\u0085e\u009bf'), 'a\\tb\\x00c\\x7fd\\x85e\\x9bf')
  t.is(escapeControls('lone \ud800 high'), 'lone \ufffd high')
  for (const plain of ['', 'stopped on h2: desired stopped', 'é ü nbsp\u00a0 😀 日本', 'C:\\path\\x1b as typed']) t.is(escapeControls(plain), plain)
  // every character of every code unit below U+00A0 and a few past it: none left, and a second pass changes nothing
  const all = Array.from({ length: 0x200 }, (_, i) => String.fromCharCode(i)).join('')
  const once = escapeControls(all)
  t.false(CONTROL.test(once))
  t.is(escapeControls(once), once)
})

test('a start that ended at once says what its guest printed, escaped: one line, no control character', t => {
  const msg = endedAtOnce('0', GUEST)
  t.is(msg, 'it ended at once with status 0: \\x1b[31mRED\\x1b]0;TITLE\\x07\\nline2')
  t.false(CONTROL.test(msg))
  t.is(endedAtOnce('1', ' \n'), 'it ended at once with status 1 (its console is empty)')
  // a process VM's output is its command's, which may hold secrets: where to read it, not what it is (bb48)
  t.is(endedAtOnce('1', 'line1 PW=secret\n', 'web'), 'it ended at once with status 1 (what it printed: vgrid vm console web)')
  t.is(endedAtOnce('1', '', 'web'), 'it ended at once with status 1 (its console is empty)')
  // QEMU quotes a failed disk's options, a VM disk's export key among them: left out (rv36)
  const said = endedAtOnce('1', 'qemu-system-x86_64: -drive driver=raw,file.driver=nbd,file.export=shop/db~3~d9253be8bd3a5cc59c18d9ef,if=virtio: Failed to connect')
  t.notRegex(said, /d9253be8/)
  t.regex(said, /file\.export=shop\/db~3~\(key\),if=virtio/)
})

test('a lease reason and its log\'s details are written escaped, within the schema\'s bounds', t => {
  const cur: Lease = { vm: 'v', holder: 'n1', epoch: 1, cpu: 1, memoryBytes: 2 ** 30, status: 'starting', at: 1, by: 'n1' }
  // as an agent without the driver's escaping made it (the driver's error is the guest's output)
  const reason = `start failed: driver process: it ended at once with status 0: ${GUEST}`
  const patch = logged(cur, { status: 'failed', reason, crashes: [1, 2, 3] }, 5, 'h1')
  t.false(CONTROL.test(patch.reason!), patch.reason)
  t.true(patch.reason!.includes('\\x1b[31mRED\\x1b]0;TITLE\\x07\\nline2'))
  const { events } = readLog(patch.log)
  t.true(events.length > 0)
  for (const e of events) t.false(CONTROL.test(e.detail ?? ''), e.detail)
  t.is(validateObject('leases', 'v', { ...cur, ...patch }), null)
  // escaping makes it longer: still within the bound (ESC is 4 characters escaped)
  const long = logged(cur, { status: 'failed', reason: '\u001b'.repeat(LEASE_REASON_MAX) }, 5)
  t.is(long.reason!.length, LEASE_REASON_MAX)
  t.is(validateObject('leases', 'v', { ...cur, ...long }), null)
  // an event logged apart from a transition (a kill's detail)
  const log = appendLog(undefined, [{ at: 1, event: 'killed', node: 'n1', detail: `fenced\n${'\u0007'.repeat(600)}` }]) as Array<{ detail: string }>
  t.false(CONTROL.test(log[0]!.detail))
  t.true(log[0]!.detail.length <= 512)
})

test('the CLI\'s history and HA lines escape what an older agent wrote raw', t => {
  const line = historyLine({ at: '2024-01-01T00:00:00.000Z', event: 'failed', node: 'h1', detail: `start failed: ${GUEST}` })
  t.false(CONTROL.test(line), line)
  t.true(line.endsWith('start failed: \\x1b[31mRED\\x1b]0;TITLE\\x07\\nline2\\r\\n'))
  const ha = { ok: false, stranded: [], unplaced: [{ vm: 'esc1', reason: `no node fits: ${GUEST}` }] } as unknown as HaReport
  const lines = haLines(ha)
  t.true(lines.some(l => l.startsWith('  esc1 runs nowhere: no node fits: \\x1b[31mRED')), lines.join('\n'))
  for (const l of lines) t.false(CONTROL.test(l), l)
})

test('vgrid status\'s health lines escape a lease reason an older agent wrote raw', t => {
  const r = Replica.create({ clusterId: 'c', nodeId: 'a', migrations: MIGRATIONS })
  r.change(w => {
    w.put('roll', { node: 'a', name: 'a', joined: 1 })
    w.put('vms', { id: 'esc1', name: 'esc1', app: null, desired: 'running', spec: { driver: 'process', cpu: 0.1, memoryBytes: 2 ** 24, volumes: [], constraints: {}, command: ['/bin/sh'] } })
    w.put('leases', { vm: 'esc1', holder: 'a', epoch: 1, cpu: 0.1, memoryBytes: 2 ** 24, status: 'failed', reason: `start failed: it ended at once with status 0: ${GUEST}` })
  })
  const fence = fenced({ rollSize: 1, aliveSeen: 1, lastMajorityAt: 0, now: 0, fenceTimeoutMs: 5000 })
  const health = new DvmmHealth({ peerId: 'a', log: silentLogger, state: { read: () => r.read() }, membership: { members: new Map() as MemberTable }, fence: () => fence }, 'spread')
  const failed = health.problems().find(p => p.cause === 'vms-failed')
  t.truthy(failed)
  t.false(CONTROL.test(failed!.message), failed!.message)
  t.true(failed!.message.includes('esc1 (start failed: it ended at once with status 0: \\x1b[31mRED\\x1b]0;TITLE\\x07\\nline2\\r\\n)'))
})

test('vm ls shows a reason\'s first line and says where the rest is (bb27: a row of escaped usage text)', t => {
  t.is(reasonCell('w1', 'exited at once with status 1: BusyBox v1.35.0 multi-call binary.\\n\\nUsage: nc [OPTIONS]\\n\\tlisten'), 'exited at once with status 1: BusyBox v1.35.0 multi-call binary. ... (all of it: vgrid vm show w1)')
  t.is(reasonCell('w1', 'two\nlines'), 'two ... (all of it: vgrid vm show w1)', 'an older agent\'s, unescaped')
  t.is(reasonCell('w1', 'one line\\n'), 'one line')
  t.is(reasonCell('w1', null), '')
})
