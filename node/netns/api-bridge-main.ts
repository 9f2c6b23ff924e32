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
  upstream.on('error', close)
  client.on('close', close)
  upstream.on('close', close)
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
