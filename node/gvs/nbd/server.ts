// The NBD listener: a unix socket that only root and the vgrid group may open (mode
// 0660, group vgrid when that group exists: the kernel checks at connect, as for the
// API's socket), and, only when asked for, loopback TCP for root only (the caller's uid
// read from the kernel's socket table, as the API does). A volume is a whole disk:
// no other local user may read or write it.
import { createServer, type Server, type Socket } from 'node:net'
import { chmod, chown, unlink } from 'node:fs/promises'
import { readSocketTable, uidOfClient, isLoopback } from '../../api/access.ts'
import type { Logger } from '../../log.ts'
import { NbdSession, emptyStats, type NbdExports, type NbdStats } from './session.ts'
import { InFlightBudget } from './budget.ts'
import { groupId } from '../../groups.ts'

/** connections at once, all sockets together: a node's VM disks (one each) and copies fit well within it */
export const MAX_SESSIONS = 1024
/** request bytes in flight over all sessions (each also has its own bound, SessionInit.maxInFlightBytes) */
export const MAX_IN_FLIGHT_BYTES = 512 * 1024 * 1024

export interface NbdServerComponents { log: Logger, exports: NbdExports }

export interface NbdServerInit {
  /** the unix socket's path, e.g. <data-dir>/nbd.sock */
  socketPath?: string
  /** loopback TCP port (0: any free one); only where asked for */
  tcpPort?: number
  tcpHost?: string
  /** the group that may open the unix socket */
  group?: string
  maxInFlight?: number
  /** MAX_SESSIONS unless set (tests) */
  maxSessions?: number
  /** MAX_IN_FLIGHT_BYTES unless set (tests) */
  maxInFlightBytes?: number
  /** who may use loopback TCP; defaults to root only */
  tcpUidAllowed?: (uid: number) => boolean
}

export class NbdServer {
  private readonly log: Logger
  private readonly exports: NbdExports
  private readonly init: NbdServerInit
  private readonly servers: Server[] = []
  private readonly sockets = new Set<Socket>()
  private readonly sessions = new Set<Promise<void>>()
  /** the bound TCP port, once started with tcpPort */
  tcpPort: number | null = null
  /** requests served since start, over all sessions */
  readonly stats: NbdStats = emptyStats()
  private readonly budget: InFlightBudget
  /** refused connections not yet logged (one line per burst) */
  private refused = 0

  constructor (components: NbdServerComponents, init: NbdServerInit) {
    this.log = components.log
    this.exports = components.exports
    this.init = init
    this.budget = new InFlightBudget(init.maxInFlightBytes ?? MAX_IN_FLIGHT_BYTES)
    if (init.tcpHost != null && !isLoopback(init.tcpHost)) throw new Error(`NBD over TCP listens on loopback only, not on "${init.tcpHost}"`)
  }

  async start (): Promise<void> {
    const { socketPath } = this.init
    if (socketPath != null) {
      await unlink(socketPath).catch(() => {}) // a stale socket of an earlier run
      const srv = this.makeServer(false)
      await listen(srv, { path: socketPath })
      await chmod(socketPath, 0o660)
      const gid = groupId(this.init.group ?? 'vgrid')
      if (gid != null) await chown(socketPath, process.getuid?.() ?? 0, gid)
      this.log.info('nbd listening', { socket: socketPath, group: gid == null ? 'none (root only)' : this.init.group ?? 'vgrid' })
    }
    if (this.init.tcpPort != null) {
      const srv = this.makeServer(true)
      await listen(srv, { host: this.init.tcpHost ?? '127.0.0.1', port: this.init.tcpPort })
      const addr = srv.address()
      this.tcpPort = typeof addr === 'object' && addr != null ? addr.port : null
      this.log.info('nbd listening on loopback tcp', { port: this.tcpPort })
    }
  }

  async stop (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await Promise.all(this.servers.map(async s => { await new Promise<void>(resolve => s.close(() => { resolve() })) }))
    await Promise.allSettled([...this.sessions])
    this.servers.length = 0
    if (this.init.socketPath != null) await unlink(this.init.socketPath).catch(() => {})
  }

  private makeServer (tcp: boolean): Server {
    const srv = createServer(socket => {
      socket.setNoDelay?.(true)
      if (tcp && !this.tcpAllowed(socket)) {
        this.log.warn('nbd tcp connection refused: not root', { remote: `${socket.remoteAddress}:${socket.remotePort}` })
        socket.destroy()
        return
      }
      if (this.sockets.size >= (this.init.maxSessions ?? MAX_SESSIONS)) {
        if (this.refused++ === 0) setTimeout(() => { this.log.warn('nbd connections refused: too many open', { refused: this.refused, max: this.init.maxSessions ?? MAX_SESSIONS }); this.refused = 0 }, 1000).unref()
        socket.destroy()
        return
      }
      // a socket counts until it is closed, not until its session ended: stop() must still
      // be able to destroy one whose client keeps it open
      this.sockets.add(socket)
      socket.on('error', () => {})
      socket.once('close', () => { this.sockets.delete(socket) })
      const run = new NbdSession({ log: this.log, exports: this.exports, stats: this.stats }, socket, { maxInFlight: this.init.maxInFlight, budget: this.budget }).run()
      this.sessions.add(run)
      void run.finally(() => { this.sessions.delete(run) })
    })
    this.servers.push(srv)
    return srv
  }

  private tcpAllowed (socket: Socket): boolean {
    const ra = socket.remoteAddress
    if (ra == null || !isLoopback(ra)) return false
    const uid = uidOfClient(readSocketTable(), { address: ra, port: socket.remotePort ?? 0 }, { address: socket.localAddress ?? '', port: socket.localPort ?? 0 })
    if (uid == null) return false
    return (this.init.tcpUidAllowed ?? (u => u === 0))(uid)
  }
}

async function listen (srv: Server, opts: { path: string } | { host: string, port: number }): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject)
    srv.listen(opts, () => { srv.off('error', reject); resolve() })
  })
}
