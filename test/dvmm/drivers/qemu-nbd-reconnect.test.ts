// A qemu VM's volume drive (diskDrive in node/dvmm/drivers/qemu.ts) reconnects when
// its NBD server goes away and comes back on the same socket, as the agent does when
// it restarts and adopts its VMs: a request made while it is away waits and then runs.
// Real QEMU (no guest: its monitor's qemu-io does the I/O) against a real qemu-nbd.
import test from 'ava'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { diskDrive } from '../../../node/dvmm/drivers/qemu.ts'
import { qmpOnce } from '../../../node/dvmm/drivers/qmp.ts'
import { which } from '../../../node/netns/netns.ts'
import { waitFor } from './compliance.ts'
import { setTimeout as sleep } from 'node:timers/promises'

const missing = ['qemu-system-x86_64', 'qemu-nbd'].filter(b => which(b) == null)
const maybe = missing.length === 0 ? test : test.skip

maybe('a volume drive waits for its NBD server to come back, and its request then runs', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-nbdrc-'))
  const file = join(dir, 'disk.raw')
  writeFileSync(file, Buffer.alloc(8 * 1024 * 1024))
  const sock = join(dir, 'nbd.sock')
  const qmp = join(dir, 'qmp.sock')
  const procs = new Set<ChildProcess>()
  t.teardown(() => {
    for (const p of procs) p.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })
  const serve = async (): Promise<ChildProcess> => {
    rmSync(sock, { force: true })
    const p = spawn('qemu-nbd', ['-f', 'raw', '-x', 'shop/disk~195113', '-k', sock, '--persistent', file], { stdio: 'ignore' })
    procs.add(p)
    p.on('exit', () => procs.delete(p))
    await waitFor('the NBD socket', () => existsSync(sock), 5000, 25)
    return p
  }
  let server = await serve()
  // the drive as a VM gets it, on no machine (the monitor's qemu-io reads and writes it)
  const drive = diskDrive(`nbd+unix:///shop/disk~195113?socket=${sock}`).replace('if=virtio', 'if=none,id=d0')
  const qemu = spawn('qemu-system-x86_64', ['-machine', 'none', '-nodefaults', '-display', 'none', '-drive', drive, '-qmp', `unix:${qmp},server=on,wait=off`], { stdio: ['ignore', 'pipe', 'pipe'] })
  procs.add(qemu)
  let stderr = ''
  let stdout = ''
  qemu.stderr!.on('data', (b: Buffer) => { stderr += b.toString() })
  // the monitor's qemu-io prints to QEMU's standard output
  qemu.stdout!.on('data', (b: Buffer) => { stdout += b.toString() })
  await waitFor('the QMP socket', () => existsSync(qmp), 10_000, 25).catch(() => { throw new Error(`qemu did not start: ${stderr}`) })
  const io = async (cmd: string): Promise<string> => {
    const from = stdout.length
    // the monitor answers once the I/O is done, which may be after QMP's own 2 s limit
    // while the server is away: what counts is what qemu-io prints
    await qmpOnce(qmp, 'human-monitor-command', { 'command-line': `qemu-io d0 "${cmd}"` }).catch(() => {})
    await waitFor('qemu-io\'s answer', () => /ops\/sec|fail|error/i.test(stdout.slice(from)), 30_000, 25).catch(() => {})
    return stdout.slice(from)
  }

  t.regex(await io('write -P 0x41 0 4096'), /wrote 4096\/4096/)
  // the server goes (an agent killed) and comes back a second later on the same socket
  server.kill('SIGKILL')
  await waitFor('qemu-nbd to exit', () => server.exitCode != null || server.signalCode != null, 5000, 25)
  const pending = io('write -P 0x42 4096 4096')
  await sleep(1000)
  server = await serve()
  t.regex(await pending, /wrote 4096\/4096/, 'the write made while the server was away ran once it was back')
  t.notRegex(await io('read -P 0x41 0 4096'), /fail/i, 'what was written before is read back')
  const bytes = readFileSync(file)
  t.is(bytes[0], 0x41)
  t.is(bytes[4096], 0x42)
  t.is(stderr.includes('error'), false, stderr)
})
