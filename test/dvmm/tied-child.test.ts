// spawnTied (node/dvmm/host/tied-child.ts): a helper (the KVM probe's QEMU) dies with
// the process that started it, also when that one is SIGKILLed before it could end it.
// The parent here is a Node process of its own; the helper is `sleep`.
import test from 'ava'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { procStat } from '../../node/dvmm/drivers/common.ts'
import { which } from '../../node/netns/netns.ts'

const skip = which('setpriv') == null ? 'setpriv (util-linux) not installed' : which('sleep') == null ? 'no sleep' : undefined
const maybe = skip === undefined ? test : test.skip

maybe('a tied helper is killed by the kernel when the process that started it is SIGKILLed', async t => {
  const mod = join(import.meta.dirname, '../../node/dvmm/host/tied-child.ts')
  const script = `const { spawnTied } = await import(${JSON.stringify(mod)}); const c = spawnTied('sleep', ['60'], { stdio: ['ignore', 'pipe', 'pipe'] }); console.log(c.pid); setInterval(() => {}, 1000)`
  const parent = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { try { parent.kill('SIGKILL') } catch {} })
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: parent.stdout! }).once('line', resolve)
    parent.once('exit', code => { reject(new Error(`the parent exited (${String(code)}) before starting the helper`)) })
  })
  const pid = Number(line)
  t.true(pid > 0)
  t.teardown(() => { try { process.kill(pid, 'SIGKILL') } catch {} })
  t.truthy(procStat(pid), 'the helper runs')
  // the pid is the command's own: setpriv execs it (a moment after the spawn)
  const { readFileSync } = await import('node:fs')
  const cmdline = (): string => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8') } catch { return '' } }
  const execBy = Date.now() + 5000
  while (!cmdline().startsWith('sleep\0') && Date.now() < execBy) await new Promise(resolve => setTimeout(resolve, 20))
  t.regex(cmdline(), /^sleep\0/, 'the pid is the command\'s own (setpriv execs it)')
  parent.kill('SIGKILL')
  const until = Date.now() + 5000
  while (procStat(pid) !== undefined && procStat(pid)?.state !== 'Z' && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 50))
  const st = procStat(pid)
  t.true(st === undefined || st.state === 'Z', `the helper is gone (state ${st?.state ?? 'none'})`)
})
