// What `vgrid vol repair` says and exits with (node/gvs/cli-copy.ts) when nothing can be
// copied because too few live nodes can hold R copies (bb33: "nothing to copy, every
// object has its copies", exit 0, on a volume short of copies).
import test from 'ava'
import type { ApiClient } from '../../node/cli/client.ts'
import { repair } from '../../node/gvs/cli-copy.ts'
import type { RepairStatusView } from '../../node/gvs/routes.ts'

function fakeApi (last: Partial<NonNullable<RepairStatusView['last']>>, health = 'degraded'): ApiClient {
  const status: RepairStatusView = { volume: '/t/full', replicas: 4, running: null, last: { node: 'n', at: new Date(Date.now() + 1000).toISOString(), copied: 0, failed: 0, bytes: 0, lost: 0, errors: [], lostObjects: [], ...last } }
  return { request: async (_m: string, _p: string, body?: { wait?: boolean }) => body?.wait === true ? { health, total: 0 } : status } as unknown as ApiClient
}

async function said (api: ApiClient, json = false): Promise<{ out: string, code: number | string | undefined }> {
  const lines: string[] = []
  const write = process.stdout.write.bind(process.stdout)
  const before = process.exitCode
  process.exitCode = undefined
  process.stdout.write = ((s: string) => { lines.push(String(s)); return true }) as typeof process.stdout.write
  try { await repair(api, '/t/full', { scrub: false, json }) } finally { process.stdout.write = write }
  const code = process.exitCode
  process.exitCode = before
  return { out: lines.join(''), code }
}

test.serial('a volume short of copies with too few live nodes is still degraded, and the exit code says so', async t => {
  const r = await said(fakeApi({ short: 113 }))
  t.regex(r.out, /\/t\/full: still degraded; copied 0 objects \(0 B\), 0 failed, 113 objects short of R=4 copies: too few live nodes with a disk to hold them/)
  t.notRegex(r.out, /every object has its copies/)
  t.is(r.code, 1)
})

test.serial('with --json too', async t => {
  t.is((await said(fakeApi({ short: 113 }), true)).code, 1)
  t.not((await said(fakeApi({}, 'healthy'), true)).code, 1)
})

test.serial('a volume with every copy: nothing to copy, exit 0', async t => {
  const r = await said(fakeApi({}))
  t.regex(r.out, /nothing to copy, every object has its copies/)
  t.not(r.code, 1)
})
