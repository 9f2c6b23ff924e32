// A GridShard in a child process, driven over the IPC channel: the membership
// benchmark spreads a large grid over several processes (loopback TCP between them)
// so that it can use every core. Run as a child, this file serves one shard;
// imported, it gives the parent a handle with the same methods (startShardProcess).
import { fork, type ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { GridShard, type ShardOptions } from './grid-shard.ts'

interface Call { id: number, method: string, args: unknown[] }
interface Reply { id: number, value?: unknown, error?: string }

/** A shard in another process: every GridShard method, answered over IPC. */
export type RemoteShard = { [K in keyof GridShard]: (...args: Parameters<GridShard[K]>) => Promise<Awaited<ReturnType<GridShard[K]>>> }

/** Forks a shard process, starts its agents and returns a handle that forwards each call. */
export async function startShardProcess (opts: ShardOptions): Promise<RemoteShard> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--serve'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: ['--expose-gc'] })
  const pending = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>()
  let next = 0
  child.on('message', (m: Reply) => {
    const p = pending.get(m.id)
    pending.delete(m.id)
    if (m.error != null) p?.reject(new Error(m.error))
    else p?.resolve(m.value)
  })
  child.on('exit', code => {
    for (const p of pending.values()) p.reject(new Error(`shard process exited (${code})`))
    pending.clear()
  })
  const call = async (method: string, args: unknown[]): Promise<unknown> => await new Promise((resolve, reject) => {
    const id = next++
    pending.set(id, { resolve, reject })
    child.send({ id, method, args } satisfies Call)
  })
  const stop = async (): Promise<void> => {
    if (child.exitCode != null) return
    const exited = new Promise(resolve => child.once('exit', resolve))
    await call('stop', []).catch(() => {})
    // the shard exits by itself once stopped; a stuck one is killed (by its own pid)
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }
  try {
    await call('start', [opts])
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  // 'then' must stay undefined, or awaiting the handle would call it
  return new Proxy({} as RemoteShard, {
    get: (_, method) => method === 'stop' ? stop : method === 'then' ? undefined : async (...args: unknown[]) => await call(String(method), args)
  })
}

async function serve (): Promise<void> {
  let shard: GridShard | undefined
  let stopping = false
  process.on('message', (m: Call) => {
    const run = async (): Promise<unknown> => {
      if (m.method === 'start') {
        const opts = m.args[0] as ShardOptions
        // BENCH_PROFILE=<first agent number>: that shard writes a CPU profile of its start
        const profile = process.env.BENCH_PROFILE === String(opts.first) ? await startProfile() : undefined
        shard = await GridShard.start(opts)
        await profile?.(`vgrid-shard-${opts.first}-start.cpuprofile`)
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

/** Starts the V8 sampling profiler; the returned function writes the profile (in the working directory). */
async function startProfile (): Promise<(file: string) => Promise<void>> {
  const { Session } = await import('node:inspector/promises')
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.start')
  return async file => {
    const { profile } = await session.post('Profiler.stop')
    await writeFile(file, JSON.stringify(profile))
    session.disconnect()
    console.error(`CPU profile of the shard's start: ${file}`)
  }
}

if (process.argv.includes('--serve') && process.send != null) await serve()
