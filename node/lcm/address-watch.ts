// The kernel's word that an address of this host came or went (`ip -o monitor
// address`, netlink), so the LCM re-sets its peers' endpoints within milliseconds of a
// move instead of at its next 1 s poll: a TCP stream inside the tunnel may stall no
// more than 2 s (issue 16), and the poll alone used half of that. The poll stays as
// the fallback; the event only says "look now".
import { spawn, type ChildProcess } from 'node:child_process'
import { which } from '../netns/netns.ts'
import type { Logger } from '../log.ts'

export class AddressWatch {
  private proc: ChildProcess | null = null
  private stopped = false
  private readonly onChange: () => void
  private readonly log: Logger

  constructor (onChange: () => void, log: Logger) {
    this.onChange = onChange
    this.log = log
  }

  start (): void {
    const ip = which('ip')
    if (ip == null) return
    const proc = spawn(ip, ['-o', 'monitor', 'address'], { stdio: ['ignore', 'pipe', 'ignore'] })
    this.proc = proc
    proc.on('error', err => { this.log.debug('address watch unavailable; polling only', { error: err.message }) })
    proc.stdout.on('data', () => { this.onChange() })
    proc.once('exit', (code, signal) => {
      this.proc = null
      if (!this.stopped) this.log.warn('address watch ended; noticing address changes by polling only', { code, signal })
    })
  }

  stop (): void {
    this.stopped = true
    this.proc?.kill('SIGTERM')
    this.proc = null
  }
}
