// The data dir's secret files: read with errors naming the file, kept 0600 (a loose
// one is tightened with a warning), and a damaged API token replaced by a new 0600 file.
import test from 'ava'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadOrCreateApiToken } from '../../node/api/access.ts'
import { loadOrCreateIdentity } from '../../protocol/identity.ts'
import { resolveCluster } from '../../node/cluster-key-store.ts'
import { createLogger } from '../../node/log.ts'

const modeOf = (f: string): number => statSync(f).mode & 0o777

test('the API token: a loose file is made 0600 and kept; a damaged one is replaced by a new 0600 file, saying so', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-secret-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const lines: string[] = []
  const log = createLogger({ write: l => lines.push(l) })
  const file = join(dir, 'api.token')
  const good = 'ab'.repeat(32)
  writeFileSync(file, good + '\n', { mode: 0o644 })
  chmodSync(file, 0o644)
  t.is(await loadOrCreateApiToken(dir, log), good)
  t.is(modeOf(file), 0o600)
  t.true(lines.some(l => l.includes('readable by others (mode 644): made 0600')))
  writeFileSync(file, 'junk')
  chmodSync(file, 0o600)
  const fresh = await loadOrCreateApiToken(dir, log)
  t.regex(fresh, /^[0-9a-f]{64}$/)
  t.not(fresh, good)
  t.is(readFileSync(file, 'utf8').trim(), fresh)
  t.is(modeOf(file), 0o600)
  t.true(lines.some(l => l.includes('API token file is damaged')))
})

test('secret files that cannot be read name themselves', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-secret-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  for (const f of ['api.token', 'identity.key', 'cluster.key']) mkdirSync(join(dir, f))
  await t.throwsAsync(loadOrCreateApiToken(dir), { message: `API token file ${join(dir, 'api.token')} is not a regular file` })
  await t.throwsAsync(loadOrCreateIdentity(dir), { message: `identity file ${join(dir, 'identity.key')} is not a regular file` })
  await t.throwsAsync(resolveCluster(dir, {}), { message: `cluster key file ${join(dir, 'cluster.key')} is not a regular file` })
  await t.throwsAsync(resolveCluster(join(dir, 'other'), { keyFile: dir }), { message: `--key ${dir} cannot be read: EISDIR` })
})
