// The QMP client closes a connection that timed out: QEMU serves one QMP client at a
// time, and a connection left open held that slot for good (bb29: a guest paused by a
// failing disk was never seen paused nor resumed, and a graceful stop found QMP full).
import test from 'ava'
import { createServer, type Socket } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Qmp } from '../../node/dvmm/drivers/qmp.ts'

/** a QMP server on a unix socket that greets after `greetMs` and answers each command after `answerMs`; counts connections still open */
async function fakeQemu (t: import('ava').ExecutionContext, greetMs: number, answerMs: number): Promise<{ path: string, open: () => number }> {
  const dir = await mkdtemp(join(tmpdir(), 'qmp-'))
  const path = join(dir, 'qmp.sock')
  const socks = new Set<Socket>()
  const server = createServer(s => {
    socks.add(s)
    s.on('close', () => { socks.delete(s) })
    s.on('error', () => {})
    setTimeout(() => { if (!s.destroyed) s.write('{"QMP": {"version": {}, "capabilities": []}}\n') }, greetMs)
    s.on('data', d => { for (const line of String(d).split('\n').filter(l => l.trim() !== '')) { void line; setTimeout(() => { if (!s.destroyed) s.write('{"return": {"status": "running"}}\n') }, answerMs) } })
  })
  await new Promise<void>(resolve => server.listen(path, resolve))
  t.teardown(async () => { for (const s of socks) s.destroy(); await new Promise(resolve => server.close(resolve)); await rm(dir, { recursive: true, force: true }) })
  return { path, open: () => socks.size }
}

const settle = async (): Promise<void> => { await new Promise(resolve => setTimeout(resolve, 100)) }

test('an open whose greeting comes too late closes its connection', async t => {
  const q = await fakeQemu(t, 500, 0)
  await t.throwsAsync(Qmp.open(q.path, 100), { message: /no answer within 100 ms/ })
  await settle()
  t.is(q.open(), 0, 'no connection left holding QEMU\'s one QMP slot')
})

test('a command answered too late ends the connection: its answer would go to the next command', async t => {
  const q = await fakeQemu(t, 0, 300)
  const c = await Qmp.open(q.path, 1000)
  await t.throwsAsync(c.execute('query-status', undefined, 100), { message: /no answer within 100 ms/ })
  await t.throwsAsync(c.execute('query-status', undefined, 1000), { message: /closed/ }, 'not answered with the late answer of the one before')
  await settle()
  t.is(q.open(), 0)
})
