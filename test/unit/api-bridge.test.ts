// The API bridge (node/netns/api-bridge-main.ts: a unix socket piped to an agent's API on
// its namespace's loopback) answers 503 `agent_down` when no agent listens (bb46: a reset
// that read as an agent that hung up), and keeps no socket of a caller it answered so
// (rv45: the caller's side, unpiped and paused, never read its end: one fd a request).
import test from 'ava'
import { spawn } from 'node:child_process'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const BRIDGE = join(import.meta.dirname, '../../node/netns/api-bridge-main.ts')

async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as { port: number }).port
  await new Promise(resolve => s.close(resolve))
  return port
}

const get = async (socketPath: string): Promise<{ status: number, body: string }> => await new Promise((resolve, reject) => {
  const req = request({ socketPath, path: '/v1/status', method: 'GET' }, res => {
    let body = ''
    res.on('data', (d: Buffer) => { body += d.toString() })
    res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
  })
  req.on('error', reject)
  req.end()
})

test('no agent listening: a 503 agent_down, and no socket kept for it', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'api-bridge-'))
  const socketPath = join(dir, 'api.sock')
  const port = await freePort()
  const bridge = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', BRIDGE, socketPath, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(async () => { bridge.kill('SIGKILL'); await rm(dir, { recursive: true, force: true }) })
  await new Promise<void>(resolve => bridge.stdout.once('data', () => resolve()))
  const fds = async (): Promise<number> => (await readdir(`/proc/${bridge.pid!}/fd`)).length
  const before = await fds()
  for (let i = 0; i < 6; i++) {
    const r = await get(socketPath)
    t.is(r.status, 503)
    t.regex(r.body, /"code":"agent_down".*no vgrid agent answers in this host's namespace \(ECONNREFUSED on 127\.0\.0\.1:\d+\): it is not running/)
  }
  // the callers' sockets closed: back to what it held before them
  const deadline = Date.now() + 3000
  while (await fds() > before && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 100))
  t.is(await fds(), before)
})
