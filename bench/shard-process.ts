// A GridShard in a child process, driven over the IPC channel: the membership
// benchmark spreads a large grid over several processes (loopback TCP between them)
// so that it can use every core. Run as a child, this file serves one shard;
// imported, it gives the parent a proxy with the same methods.
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { GridShard, type ShardOptions, type IdleStats } from './grid-shard.ts'

interface Call { id: number, method: string, args: unknown[] }
interface Reply { id: number, value?: unknown, error?: string }

/** The parent's handle on a shard process: the same methods, asynchronous. */
export class ShardProcess {
  private readonly child: ChildProcess
  private readonly pending = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>()
  private next = 0

  private constructor (child: ChildProcess) {
    this.child = child
    child.on('message', (m: Reply) => {
      const p = this.pending.get(m.id)
      this.pending.delete(m.id)
      if (m.error != null) p?.reject(new Error(m.error))
      else p?.resolve(m.value)
    })
    child.on('exit', code => {
      for (const p of this.pending.values()) p.reject(new Error(`shard process exited (${code})`))
      this.pending.clear()
    })
  }

  static async start (opts: ShardOptions): Promise<ShardProcess> {
    const child = fork(fileURLToPath(import.meta.url), ['--serve'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: ['--expose-gc'] })
    const s = new ShardProcess(child)
    await s.call('start', opts)
    return s
  }

  private async call<T>(method: string, ...args: unknown[]): Promise<T> {
    const id = this.next++
    return await new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      this.child.send({ id, method, args } satisfies Call)
    })
  }

  get pid (): number | undefined { return this.child.pid }
  async seedAddr (): Promise<string> { return await this.call('seedAddr') }
  async ids (): Promise<string[]> { return await this.call('ids') }
  async aliveMin (): Promise<number> { return await this.call('aliveMin') }
  async subscribe (topic: string): Promise<void> { await this.call('subscribe', topic) }
  async beginIdle (): Promise<void> { await this.call('beginIdle') }
  async endIdle (): Promise<IdleStats> { return await this.call('endIdle') }
  async watchAdvert (originId: string, round: number): Promise<void> { await this.call('watchAdvert', originId, round) }
  async watchRaw (originId: string, topic: string, round: number): Promise<void> { await this.call('watchRaw', originId, topic, round) }
  async watchDead (id: string): Promise<void> { await this.call('watchDead', id) }
  async hitTimes (): Promise<number[]> { return await this.call('hitTimes') }
  async changeAdvert (round: number): Promise<number> { return await this.call('changeAdvert', round) }
  async publishRaw (topic: string, round: number): Promise<number> { return await this.call('publishRaw', topic, round) }
  async crashLast (): Promise<number> { return await this.call('crashLast') }

  async stop (): Promise<void> {
    if (this.child.exitCode != null) return
    const exited = new Promise(resolve => this.child.once('exit', resolve))
    await this.call('stop').catch(() => {})
    // the shard exits by itself once stopped; a stuck one is killed (by its own pid)
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }
}

async function serve (): Promise<void> {
  let shard: GridShard | undefined
  let stopping = false
  process.on('message', (m: Call) => {
    const run = async (): Promise<unknown> => {
      if (m.method === 'start') {
        shard = await GridShard.start(m.args[0] as ShardOptions)
        return null
      }
      if (shard == null) throw new Error('shard not started')
      if (m.method === 'stop') {
        stopping = true
        await shard.stop()
        setImmediate(() => process.exit(0))
        return null
      }
      const f = (shard as unknown as Record<string, (...a: unknown[]) => unknown>)[m.method]
      if (typeof f !== 'function') throw new Error(`no shard method ${m.method}`)
      return await f.apply(shard, m.args)
    }
    run().then(
      value => process.send!({ id: m.id, value: value ?? null }),
      (err: unknown) => process.send!({ id: m.id, error: (err as Error).message })
    )
  })
  // the parent went away: nothing left to serve
  process.on('disconnect', () => { if (!stopping) void (shard?.stop() ?? Promise.resolve()).finally(() => process.exit(0)) })
}

if (process.argv.includes('--serve') && process.send != null) await serve()
