// Small TCP/UDP probes run inside namespaces with Node itself: an echo server on a
// list of ports, and a client that reports whether one exchange went through.
import type { ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import { nsRun, which, sleep } from '../../node/netns/netns.ts'
import { nodeBin } from '../../node/netns/processes.ts'

const SERVER = `
const net = require('node:net'); const dgram = require('node:dgram')
for (const p of process.argv.slice(1).map(Number)) {
  net.createServer(s => s.pipe(s)).listen(p, '0.0.0.0')
  const u = dgram.createSocket('udp4'); u.on('message', (m, r) => u.send(m, r.port, r.address)); u.bind(p, '0.0.0.0')
}
setTimeout(() => console.log('ready'), 100)
`

const CLIENT = `
const [proto, host, port, ms] = process.argv.slice(1)
const done = ok => { console.log(ok ? 'ok' : 'fail'); process.exit(0) }
setTimeout(() => done(false), Number(ms))
if (proto === 'tcp') {
  const s = require('node:net').connect(Number(port), host, () => s.write('ping'))
  s.on('data', d => done(d.toString() === 'ping')); s.on('error', () => done(false))
} else {
  const u = require('node:dgram').createSocket('udp4')
  u.on('message', m => done(m.toString() === 'ping')); u.send('ping', Number(port), host)
}
`

/** Starts an echo server (tcp and udp) on `ports` in `ns`; killed when the test ends. */
export async function echoServer (t: ExecutionContext, ns: string, ports: number[]): Promise<void> {
  const p = spawn(which('ip') ?? 'ip', ['netns', 'exec', ns, nodeBin(), '-e', SERVER, ...ports.map(String)], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { if (p.exitCode == null) p.kill('SIGKILL') })
  await new Promise<void>((resolve, reject) => {
    p.stdout.once('data', () => resolve())
    p.once('exit', c => reject(new Error(`echo server in ${ns} exited ${c}`)))
  })
  await sleep(50)
}

/** One echo exchange from `ns` to host:port; true when the answer came back. */
export async function exchange (ns: string, proto: 'tcp' | 'udp', host: string, port: number, timeoutMs = 1500): Promise<boolean> {
  const out = await nsRun(ns, nodeBin(), ['-e', CLIENT, proto, host, String(port), String(timeoutMs)], { timeoutMs: timeoutMs + 10_000 })
  return out.trim() === 'ok'
}

const STREAM = `
const [host, port, ms] = process.argv.slice(1)
const s = require('node:net').connect(Number(port), host)
const times = []; let error = null; let seq = 0; let buf = ''
s.on('connect', () => { const iv = setInterval(() => s.write(String(seq++) + '\\n'), 100); setTimeout(() => { clearInterval(iv); s.end() }, Number(ms)) })
s.on('data', d => { buf += d.toString(); const parts = buf.split('\\n'); buf = parts.pop(); for (const _ of parts) times.push(Date.now()) })
s.on('error', e => { error = e.code || e.message })
s.on('close', () => {
  let gap = 0; for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i] - times[i - 1])
  console.log(JSON.stringify({ error, echoes: times.length, sent: seq, maxGapMs: gap }))
})
`

export interface StreamResult { error: string | null, echoes: number, sent: number, maxGapMs: number }

/**
 * One TCP connection from `ns` to an echo server, a line every 100 ms for `ms`;
 * resolves with the longest time between two echoes and any socket error (a reset).
 */
export async function tcpStream (ns: string, host: string, port: number, ms: number): Promise<StreamResult> {
  const out = await nsRun(ns, nodeBin(), ['-e', STREAM, host, String(port), String(ms)], { timeoutMs: ms + 60_000 })
  return JSON.parse(out.trim()) as StreamResult
}
