// The kernel's word that an address of this host came or went (`ip -o monitor
// address`, netlink), so the LCM re-sets its peers' endpoints within milliseconds of a
// move instead of at its next 1 s poll: a TCP stream inside the tunnel may stall no
// more than 2 s (issue 16), and the poll alone used half of that. The poll stays as
// the fallback; the event only says "look now".
import { spawn, type ChildProcess } from 'node:child_process'
import { which } from '../netns/netns.ts'
import type { Logger } from '../log.ts'

/** a watcher that ended is started again after this long (doubling up to RESTART_MAX_MS) */
const RESTART_MIN_MS = 1000
const RESTART_MAX_MS = 60_000

export class AddressWatch {
  private proc: ChildProcess | null = null
  private running = false
  private restartMs = RESTART_MIN_MS
  private timer?: NodeJS.Timeout
  private readonly onChange: () => void
  private readonly log: Logger

  constructor (onChange: () => void, log: Logger) {
    this.onChange = onChange
    this.log = log
  }

  start (): void {
    this.running = true
    this.spawn()
  }

  stop (): void {
    this.running = false
    clearTimeout(this.timer)
    this.proc?.stdin?.end()
    this.proc = null
  }

  private spawn (): void {
    const ip = which('ip')
    if (ip == null || !this.running) return
    // it ends with the agent, also when the agent is killed and never stops it: the shell
    // waits on a pipe from the agent, which the kernel closes when the agent goes
    // (stop() closes it too), and then ends the monitor
    const proc = spawn(which('sh') ?? '/bin/sh', ['-c', '"$1" -o monitor address & read -r _; kill $!', 'sh', ip], { stdio: ['pipe', 'pipe', 'ignore'] })
    proc.stdin.on('error', () => {})
    this.proc = proc
    const startedAt = Date.now()
    proc.on('error', err => { this.log.debug('address watch could not start', { error: err.message }) })
    proc.stdout.on('data', () => { this.onChange() })
    proc.once('exit', (code, signal) => {
      if (this.proc !== proc) return
      this.proc = null
      if (!this.running) return
      // one that ran a while is started again soon; one that keeps failing, ever more slowly
      this.restartMs = Date.now() - startedAt > RESTART_MAX_MS ? RESTART_MIN_MS : Math.min(this.restartMs * 2, RESTART_MAX_MS)
      this.log.warn('address watch ended; polling until it runs again', { code, signal, againInMs: this.restartMs })
      this.timer = setTimeout(() => { this.spawn() }, this.restartMs)
      this.onChange() // what changed meanwhile
    })
  }
}
