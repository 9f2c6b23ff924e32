// Runs inside a host's namespace (started with `ip netns exec`): accepts connections
// on a unix socket, which lives in the shared filesystem and so is reachable from
// the root namespace, and pipes each to the agent's API on this namespace's
// loopback. That way the caller reaches every host's API even while the host is
// cut off or its link is down, and the root namespace gets no interface or route.
// Usage: api-bridge-main.ts SOCKET_PATH PORT [--unprivileged]. Exits when stdin
// closes (its parent went away), so a bridge never outlives whoever started it.
// --unprivileged: once listening, the bridge runs as nobody, so the agent sees its
// connections as an ordinary user's (reads only): the demo sends callers that are
// not root or in the vgrid group through such a bridge.
import { createServer, connect } from 'node:net'
import { rmSync } from 'node:fs'

const [socketPath, portText, mode] = process.argv.slice(2)
const port = Number(portText)
if (socketPath == null || !(port > 0)) {
  process.stderr.write('usage: api-bridge-main.ts SOCKET_PATH PORT\n')
  process.exit(2)
}

try { rmSync(socketPath) } catch {}
const server = createServer(client => {
  const upstream = connect(port, '127.0.0.1')
  client.pipe(upstream).pipe(client)
  const close = (): void => { client.destroy(); upstream.destroy() }
  client.on('error', close)
  client.on('close', close)
  // the agent's side ended: what it sent still goes out (destroy would drop it), then the
  // end; the caller's side, unpiped and so paused, is read on to its end (or its socket
  // stays open: rv45), and let go after 10 s whatever it does
  const ended = (): void => { client.resume(); setTimeout(() => client.destroy(), 10_000).unref() }
  upstream.on('close', () => { client.end(); ended() })
  // no agent listening (killed, not started again): an HTTP answer saying so, not a reset
  // of the caller's connection, which read as an agent that took it and hung up (bb46)
  let connected = false
  upstream.once('connect', () => { connected = true })
  upstream.on('error', err => {
    if (connected || !client.writable) { close(); return }
    client.unpipe(upstream)
    ended()
    const body = JSON.stringify({ error: { code: 'agent_down', message: `no vgrid agent answers in this host's namespace (${(err as NodeJS.ErrnoException).code ?? err.message} on 127.0.0.1:${port}): it is not running` } })
    client.end(`HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
  })
})
server.listen(socketPath, () => {
  if (mode === '--unprivileged') {
    process.setgid?.(65534)
    process.setuid?.(65534)
  }
  process.stdout.write('ready\n')
})

const exit = (): void => {
  try { rmSync(socketPath) } catch {}
  process.exit(0)
}
process.stdin.on('end', exit)
process.stdin.on('close', exit)
process.stdin.resume()
process.on('SIGTERM', exit)
process.on('SIGINT', exit)
