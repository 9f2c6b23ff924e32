// Talks to test/lcm/service-driver.ts (one LcmService in a namespace) over JSON lines.
import type { ExecutionContext } from 'ava'
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { which } from '../../node/netns/netns.ts'
import { removeLeftoverInterfaces } from '../../node/lcm/wireguard.ts'
import { nodeBin } from '../../node/netns/processes.ts'

export interface Msg { type: string, [k: string]: unknown }

export class Driver {
  private readonly p: ChildProcess
  private readonly waiting: Array<{ type: string, resolve: (m: Msg) => void }> = []
  readonly seen: Msg[] = []
  constructor (t: ExecutionContext, ns: string, cfg: object) {
    this.p = spawn(which('ip') ?? 'ip', ['netns', 'exec', ns, nodeBin(), '--disable-warning=ExperimentalWarning', join(import.meta.dirname, 'service-driver.ts'), JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'inherit'] })
    // a test that failed midway leaves the service's wireguard-go running (it outlives
    // its agent): removed as a new agent removes another's, socket included
    t.teardown(async () => {
      if (this.p.exitCode == null && this.p.signalCode == null) {
        const exited = new Promise(resolve => this.p.once('exit', resolve))
        this.p.kill('SIGKILL')
        await exited
      }
      await removeLeftoverInterfaces('', ns).catch(() => {})
    })
    createInterface({ input: this.p.stdout! }).on('line', l => {
      const m = JSON.parse(l) as Msg
      this.seen.push(m)
      const i = this.waiting.findIndex(w => w.type === m.type || m.type === 'error')
      if (i >= 0) this.waiting.splice(i, 1)[0]!.resolve(m)
    })
  }

  async next (type: string, timeoutMs = 20_000): Promise<Msg> {
    const have = this.seen.findIndex(m => m.type === type)
    if (have >= 0) return this.seen.splice(have, 1)[0]!
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${type}" from the driver in ${timeoutMs} ms`)), timeoutMs)
      this.waiting.push({ type, resolve: m => { clearTimeout(timer); this.seen.splice(this.seen.indexOf(m), 1); if (m.type === 'error') reject(new Error(String(m.message))); else resolve(m) } })
    })
  }

  async send (cmd: object, answer = 'done'): Promise<Msg> {
    this.p.stdin!.write(JSON.stringify(cmd) + '\n')
    return await this.next(answer)
  }

  get pid (): number | undefined { return this.p.pid }
}

