// The durable small-file writer (node/durable-file.ts): the file holds the new bytes
// whole, with its mode from creation on, no tmp file is left, and a write that fails
// leaves the old file as it was.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeFileDurable, writeFileDurableSync } from '../../node/durable-file.ts'

const HELPER = new URL('../../node/durable-file.ts', import.meta.url).pathname
// the modes below are the ones asked for less this umask (this test file has its own process)
process.umask(0o022)

function scratch (t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-durable-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

for (const [name, write] of [
  ['writeFileDurable', writeFileDurable],
  ['writeFileDurableSync', async (...a: Parameters<typeof writeFileDurableSync>) => { writeFileDurableSync(...a) }]
] as const) {
  test(`${name}: new file with its content and mode, no tmp left`, async t => {
    const dir = scratch(t)
    await write(join(dir, 'k.key'), Buffer.from([1, 2, 3, 0, 255]), { mode: 0o600 })
    await write(join(dir, 'p.json'), '{"a":1}\n')
    t.deepEqual([...readFileSync(join(dir, 'k.key'))], [1, 2, 3, 0, 255])
    t.is(statSync(join(dir, 'k.key')).mode & 0o777, 0o600)
    t.is(readFileSync(join(dir, 'p.json'), 'utf8'), '{"a":1}\n')
    t.is(statSync(join(dir, 'p.json')).mode & 0o777, 0o644)
    t.deepEqual(readdirSync(dir).sort(), ['k.key', 'p.json'])
  })

  test(`${name}: an existing file is replaced whole (a longer one leaves no tail), its mode with it`, async t => {
    const dir = scratch(t)
    const path = join(dir, 'cluster.key')
    writeFileSync(path, 'x'.repeat(5000), { mode: 0o644 })
    await write(path, 'short\n', { mode: 0o600 })
    t.is(readFileSync(path, 'utf8'), 'short\n')
    t.is(statSync(path).mode & 0o777, 0o600)
    t.deepEqual(readdirSync(dir), ['cluster.key'])
  })

  test(`${name}: a failed rename (a directory in the way) leaves no tmp`, async t => {
    const dir = scratch(t)
    mkdirSync(join(dir, 'peers.json'))
    writeFileSync(join(dir, 'peers.json', 'inside'), 'kept')
    await t.throwsAsync(async () => { await write(join(dir, 'peers.json'), 'new') })
    t.deepEqual(readdirSync(dir), ['peers.json'])
    t.is(readFileSync(join(dir, 'peers.json', 'inside'), 'utf8'), 'kept')
  })
}

test('a failing write (here: over the file size limit) leaves the old file intact and no tmp', t => {
  // root writes to read-only directories, so the failure is made with RLIMIT_FSIZE (EFBIG;
  // SIGXFSZ ignored, as it stays across exec) in a child: the same for root and others
  const dir = scratch(t)
  const path = join(dir, 'identity.key')
  writeFileSync(path, 'old key', { mode: 0o600 })
  const script = `
    import { writeFileDurable, writeFileDurableSync } from ${JSON.stringify(HELPER)}
    const big = Buffer.alloc(256 * 1024, 7)
    const out = []
    try { writeFileDurableSync(${JSON.stringify(path)}, big, { mode: 0o600 }); out.push('sync: written') } catch (err) { out.push('sync: ' + err.code) }
    try { await writeFileDurable(${JSON.stringify(path)}, big, { mode: 0o600 }); out.push('async: written') } catch (err) { out.push('async: ' + err.code) }
    console.log(out.join(','))`
  const r = spawnSync('bash', ['-c', 'trap "" XFSZ; ulimit -f 64; exec "$0" --disable-warning=ExperimentalWarning --input-type=module -e "$1"', process.execPath, script], { encoding: 'utf8' })
  t.is(r.status, 0, r.stderr)
  t.is(r.stdout.trim(), 'sync: EFBIG,async: EFBIG')
  t.is(readFileSync(path, 'utf8'), 'old key')
  t.deepEqual(readdirSync(dir), ['identity.key'])
})

test('a write the process cannot make (read-only directory) leaves the old file and no tmp', async t => {
  if (process.getuid?.() === 0) { t.pass('root writes to read-only directories: covered by the EFBIG test'); return }
  const dir = scratch(t)
  const path = join(dir, 'wireguard.key')
  writeFileSync(path, 'old key', { mode: 0o600 })
  const { chmodSync } = await import('node:fs')
  chmodSync(dir, 0o500)
  t.teardown(() => { chmodSync(dir, 0o700) })
  await t.throwsAsync(async () => { await writeFileDurable(path, 'new key', { mode: 0o600 }) }, { code: 'EACCES' })
  t.throws(() => { writeFileDurableSync(path, 'new key', { mode: 0o600 }) }, { code: 'EACCES' })
  t.is(readFileSync(path, 'utf8'), 'old key')
  t.deepEqual(readdirSync(dir), ['wireguard.key'])
})
