// A vol export that fails midway (a read error: part of the volume on a dead node) left
// a full-size file that passed for an image, said nowhere (a tester). The file it made
// is removed; one there before (--force) is said to be overwritten in part; and a
// volume that is not healthy says why.
import test from 'ava'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { copyFailed } from '../../node/gvs/cli-copy.ts'
import { CliError, type ApiClient } from '../../node/cli/client.ts'

const degraded = { request: async () => ({ path: '/t/d0', state: 'ready', health: { state: 'degraded', reasons: ['3 objects are unavailable, unreadable and not written until a node that took their writes returns'] } }) } as unknown as ApiClient
const gone = { request: async () => { throw new Error('no answer') } } as unknown as ApiClient

test('a failed export removes the file it made, and says the volume\'s state', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-copy-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'd0.raw')
  writeFileSync(file, Buffer.alloc(4096))
  const err = await copyFailed(degraded, new CliError('qemu-img convert failed (exit 1): error while reading at byte 0: Input/output error'), 'export', file, '/t/d0', 'vol-1', false) as CliError
  t.false(existsSync(file), 'the partial file is gone')
  t.is(err.message, `qemu-img convert failed (exit 1): error while reading at byte 0: Input/output error: the partial ${file} was removed; /t/d0 is degraded: 3 objects are unavailable, unreadable and not written until a node that took their writes returns`)
  t.is(err.exitCode, 1)
})

test('a failed export over a file that was there (--force) keeps it and says it holds no whole image; an import says the volume may hold part', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-copy-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'old.raw')
  writeFileSync(file, Buffer.alloc(4096))
  const over = await copyFailed(gone, new CliError('qemu-img convert failed (exit 1)'), 'export', file, '/t/d0', 'vol-1', true) as CliError
  t.true(existsSync(file))
  t.is(over.message, `qemu-img convert failed (exit 1): ${file} was overwritten in part and holds no whole image; asking the agent about /t/d0 afterwards failed (no answer): it may have stopped during the export`)
  const imp = await copyFailed(gone, new CliError('qemu-img convert failed (exit 1)'), 'import', file, '/t/d0', 'vol-1', false) as CliError
  t.is(imp.message, `qemu-img convert failed (exit 1): /t/d0 may hold part of ${file}; import it again once the cause is fixed; asking the agent about /t/d0 afterwards failed (no answer): it may have stopped during the import`)
  // the volume removed during the copy (bb26)
  const removed = { request: async () => { throw new CliError('no volume with id or path "vol-1" (not_found)', 1, { code: 'not_found' }) } } as unknown as ApiClient
  t.is((await copyFailed(removed, new CliError('qemu-img convert failed (exit 1)'), 'import', file, '/t/d0', 'vol-1', false) as CliError).message, `qemu-img convert failed (exit 1): /t/d0 may hold part of ${file}; import it again once the cause is fixed; its volume was removed during the import`)
  t.true(existsSync(file), 'an import never removes its image')
  const usage = new CliError('--format "x": raw or qcow2', 2)
  t.is(await copyFailed(gone, usage, 'export', file, '/t/d0', 'vol-1', true), usage, 'a usage error is passed on as it is')
})
