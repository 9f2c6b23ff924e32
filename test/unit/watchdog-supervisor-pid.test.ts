// Which process is a data dir's watchdog supervisor (node/dvmm/watchdog/supervisor-pid.ts):
// a pid.json without a boot id (an older release's) counts only when the process's
// command line is the supervisor's for that data dir, and is then stamped with the boot id.
import test from 'ava'
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isSupervisorCmdline, liveSupervisor } from '../../node/dvmm/watchdog/supervisor-pid.ts'
import { watchdogPaths } from '../../node/dvmm/watchdog/paths.ts'
import { currentBootId, procStat } from '../../node/dvmm/drivers/common.ts'

test('isSupervisorCmdline: the supervisor script, followed by this data dir', t => {
  t.true(isSupervisorCmdline(['/usr/bin/node', '--disable-warning=ExperimentalWarning', '/opt/vgrid/node/dvmm/watchdog/supervisor-main.ts', '/var/lib/vgrid', '3000', '300'], '/var/lib/vgrid'))
  t.true(isSupervisorCmdline(['node', '/opt/vgrid/dist/node/dvmm/watchdog/supervisor-main.js', '/d'], '/d'))
  t.false(isSupervisorCmdline(['node', '/opt/vgrid/dist/node/dvmm/watchdog/supervisor-main.js', '/other'], '/d'), 'another data dir\'s')
  t.false(isSupervisorCmdline(['/usr/sbin/sshd', '-D'], '/d'))
  t.false(isSupervisorCmdline([], '/d'))
})

test('liveSupervisor: an old pid.json (no boot id) counts only for the supervisor\'s command line, and is stamped', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-supervisor-pid-'))
  const p = watchdogPaths(dir)
  mkdirSync(p.dir, { recursive: true })
  // a stand-in with the supervisor's command line: a script of that name, given the data dir
  const script = join(dir, 'supervisor-main.js')
  writeFileSync(script, 'setTimeout(() => {}, 60_000)\n')
  const child = spawn(process.execPath, [script, dir, '3000'], { stdio: 'ignore' })
  t.teardown(() => { child.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }) })
  await new Promise(resolve => child.once('spawn', resolve))
  const st = procStat(child.pid!)

  // this test process is alive with the recorded start time, but is no supervisor
  writeFileSync(p.pid, JSON.stringify({ pid: process.pid, startTicks: procStat(process.pid)!.startTicks }))
  t.is(liveSupervisor(dir), undefined)
  t.false('bootId' in JSON.parse(readFileSync(p.pid, 'utf8')), 'not stamped')

  writeFileSync(p.pid, JSON.stringify({ pid: child.pid, startTicks: st!.startTicks }))
  t.is(liveSupervisor(dir), child.pid)
  t.is(JSON.parse(readFileSync(p.pid, 'utf8')).bootId, currentBootId(), 'stamped with this boot')
  t.is(liveSupervisor(dir), child.pid)

  // a record of another boot is refused whatever runs under its pid
  writeFileSync(p.pid, JSON.stringify({ pid: child.pid, startTicks: st!.startTicks, bootId: '00000000-0000-0000-0000-000000000000' }))
  t.is(liveSupervisor(dir), undefined)
  // junk names no supervisor: the one running for this data dir is found by its command line, and recorded again
  writeFileSync(p.pid, '{"pid": "x"')
  t.is(liveSupervisor(dir), child.pid)
  t.is(JSON.parse(readFileSync(p.pid, 'utf8')).pid, child.pid)
  // with none running, junk is none
  child.kill('SIGKILL')
  await new Promise(resolve => child.once('exit', resolve))
  writeFileSync(p.pid, '{"pid": "x"')
  t.is(liveSupervisor(dir), undefined)
})
