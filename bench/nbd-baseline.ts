// What the volume benchmarks measure against and with: qemu-nbd serving a raw file,
// and one nbdcopy run, timed, with its own CPU seconds.
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { open, stat } from 'node:fs/promises'
import { join } from 'node:path'

const run = promisify(execFile)

/** qemu-nbd serving `dir`/base.raw (made sparse, `size` bytes) on a unix socket in `dir`, as export "base" */
export async function qemuNbd (dir: string, size: number): Promise<{ uri: string, pid: number, stop: () => Promise<void> }> {
  const file = join(dir, 'base.raw')
  const fh = await open(file, 'w')
  await fh.truncate(size)
  await fh.close()
  const sock = join(dir, 'qemu-nbd.sock')
  const p = spawn('qemu-nbd', ['-f', 'raw', '-x', 'base', '-k', sock, '--persistent', '--shared=16', '--cache=writeback', file], { stdio: 'ignore' })
  const exited = new Promise(resolve => p.once('exit', resolve))
  for (let i = 0; i < 100 && !await stat(sock).then(() => true, () => false); i++) await new Promise(resolve => setTimeout(resolve, 50))
  return { uri: `nbd+unix:///base?socket=${sock}`, pid: p.pid!, stop: async () => { p.kill('SIGTERM'); await exited } }
}

/** one nbdcopy with `args`, timed; its own CPU seconds by /usr/bin/time */
export async function nbdcopyTimed (args: string[]): Promise<{ ms: number, cpu: number }> {
  const t0 = performance.now()
  const { stderr } = await run('/usr/bin/time', ['-f', 'cpu %U %S', 'nbdcopy', ...args])
  const m = /cpu ([\d.]+) ([\d.]+)/.exec(stderr)
  return { ms: performance.now() - t0, cpu: m == null ? 0 : Number(m[1]) + Number(m[2]) }
}
