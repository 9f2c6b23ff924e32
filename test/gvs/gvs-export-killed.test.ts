// `vgrid vol export` of a volume in use reads a snapshot it leases for the export
// (export-*). An export killed midway (SIGKILL: nothing of it runs after), or whose
// agent died, leaves that snapshot behind no more: the agent removes it once nothing
// holds it (the export's lease ran out unrenewed, no NBD session reads it), and logs it.
// Against one agent's GVS service and HTTP API, with the real CLI in its own process.
import test, { type ExecutionContext } from 'ava'
import Fastify from 'fastify'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createHost } from '../../protocol/host.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import type { Member } from '../../protocol/membership.ts'
import { Replica } from '../../crdt/replica.ts'
import { GvsService, vol } from '../../node/gvs/index.ts'
import type { VolumeView } from '../../node/gvs/routes.ts'
import { ApiClient } from '../../node/cli/client.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { isAlive } from '../../node/netns/netns.ts'
import { toApiError } from '../../node/api/errors.ts'
import { createLogger } from '../../node/log.ts'

const run = promisify(execFile)
const main = join(import.meta.dirname, '../../node/cli/main.ts')
/** an export's lease here (its CLI renews it every third of this) */
const LEASE_MS = 3000
const haveQemuImg = await run('sh', ['-c', 'command -v qemu-img']).then(() => true, () => false)

/** one agent's volume store and API on a memory host; `restart` makes a new service over the same data dir, document and host (an agent killed and started again) */
async function agent (t: ExecutionContext, tag: string) {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-export-'))
  const lines: string[] = []
  const log = createLogger({ write: l => { lines.push(l) } })
  const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey: generateClusterKey(), listen: [`/memory/${tag}${process.pid}`], mdns: false, transport: 'memory' })
  const self = host.peerId.toString()
  const replica = Replica.create({ clusterId: 'c1', nodeId: self })
  const state = { read: () => replica.read(), write: async <T>(fn: Parameters<Replica['change']>[0], message?: string) => replica.change(fn, message).result as T }
  const members = new Map([[self, { nodeId: self, state: 'alive', advert: { capacity: { diskBytes: 2 ** 40 }, free: { diskBytes: 2 ** 39 } } } as unknown as Member]])
  const make = (): GvsService => new GvsService({ peerId: self, log, config: { dataDir: dir }, host, state, membership: { members } }, { writerIdleMs: 60_000, reconcileMs: 0, exportLeaseMs: LEASE_MS, env: false })
  let svc = make()
  await svc.start()
  const serve = async (): Promise<{ app: ReturnType<typeof Fastify>, api: string }> => {
    const app = Fastify()
    app.setErrorHandler((err, _req, reply) => { const e = toApiError(err); void reply.code(e.status).send({ error: { code: e.code, message: e.message } }) })
    svc.routes(app)
    await app.listen({ host: '127.0.0.1', port: 0 })
    const addr = app.server.address()
    return { app, api: `127.0.0.1:${typeof addr === 'object' && addr != null ? addr.port : 0}` }
  }
  let served = await serve()
  t.teardown(async () => { await served.app.close(); await svc.stop(); await host.stop(); await rm(dir, { recursive: true, force: true }) })
  /** a vol command in this process, its output kept */
  const cli = async (...args: string[]): Promise<string> => {
    const out: string[] = []
    const write = process.stdout.write.bind(process.stdout)
    process.stdout.write = ((s: string) => { out.push(String(s)); return true }) as typeof process.stdout.write
    try { await vol([...args, '--api', served.api]) } finally { process.stdout.write = write }
    return out.join('')
  }
  const snapshots = async (path: string): Promise<string[]> => (await new ApiClient(served.api).get<VolumeView>(`/v1/volumes/${encodeURIComponent(path)}`)).snapshots.map(s => s.name)
  return {
    dir, lines, self, replica, cli, snapshots,
    get svc () { return svc },
    get api () { return served.api },
    /** the agent dies (its service and API end; nothing of it runs after) and starts again */
    async restart (): Promise<void> {
      await svc.stop()
      await served.app.close()
      svc = make()
      await svc.start()
      served = await serve()
    }
  }
}

/** polls until `fn` is true, failing after `ms` */
async function until (fn: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (!await fn()) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`)
    await sleep(100)
  }
}

/** the child processes of `pid` (its qemu-img), read before it is killed */
async function childrenOf (pid: number): Promise<number[]> {
  const out: number[] = []
  for (const task of await readdir(`/proc/${pid}/task`).catch(() => [])) {
    const kids = await readFile(`/proc/${pid}/task/${task}/children`, 'utf8').catch(() => '')
    out.push(...kids.trim().split(/\s+/).filter(x => x !== '').map(Number))
  }
  return out
}

test.serial('a vol export killed by SIGKILL leaves no snapshot: kept while an NBD session reads it (vol rm names it), then removed and logged', async t => {
  if (!haveQemuImg) { t.log('skipped: qemu-img (qemu-utils) not installed'); t.pass(); return }
  const a = await agent(t, 'gvsexpkill')
  await a.cli('create', '/e/v', '--size', '64M')
  // a writer: the export reads a snapshot taken at its start
  const writer = await NbdClient.open(join(a.dir, 'nbd.sock'), 'e/v')
  t.teardown(async () => { await writer.close().catch(() => {}) })
  const before = Buffer.alloc(4096, 0x5a)
  await writer.write(0, before)

  const out = join(a.dir, 'out.raw')
  const c = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', main, 'vol', 'export', '/e/v', out, '--api', a.api], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VGRID_API: '' } })
  const exited = new Promise<void>(resolve => c.once('exit', () => { resolve() }))
  const orphans: number[] = []
  t.teardown(async () => {
    if (c.exitCode == null && c.signalCode == null) c.kill('SIGKILL')
    await exited
    // its qemu-img, should it outlive the SIGKILL
    for (const pid of orphans) { try { process.kill(pid, 'SIGKILL') } catch {} }
  })
  let said = ''
  c.stderr.on('data', (b: Buffer) => { said += b.toString() })
  const name = await new Promise<string>((resolve, reject) => {
    let text = ''
    c.stdout.on('data', (b: Buffer) => {
      text += b.toString()
      const m = /exporting snapshot \/e\/v@(export-\S+), taken now/.exec(text)
      if (m != null) resolve(m[1]!)
    })
    void exited.then(() => { reject(new Error(`the export ended before it said its snapshot: ${text} ${said}`)) })
  })
  t.regex(name, /^export-\d{8}T\d{6}-[a-z0-9]+$/)
  // what the snapshot records: this node, this agent's run, until when its hold stands
  t.like((await new ApiClient(a.api).get<VolumeView>('/v1/volumes/%2Fe%2Fv')).snapshots.find(s => s.name === name), { export: { node: a.self } })
  const reader = await NbdClient.open(join(a.dir, 'nbd.sock'), `e/v@${name}`)
  t.teardown(async () => { await reader.close().catch(() => {}) })
  orphans.push(...await childrenOf(c.pid!))
  c.kill('SIGKILL')
  await exited
  t.is(c.signalCode, 'SIGKILL')
  // its qemu-img ends with it (setpriv --pdeathsig; bb50: left writing on, orphaned, to a whole file nobody was told of)
  t.true(orphans.length > 0, 'the export ran qemu-img')
  await until(async () => orphans.every(pid => !isAlive(pid)), 5000, 'the export\'s qemu-img ended with it')

  // its lease runs out unrenewed; an NBD session still reads the snapshot: it stays
  await sleep(LEASE_MS + 1000)
  t.true((await a.snapshots('/e/v')).includes(name), 'never removed while an export reads it')
  t.true((await reader.read(0, 4096)).equals(before), 'and it reads what the snapshot froze')
  // vol rm refuses it as a running export's, not as one left behind
  await t.throwsAsync(a.cli('rm', '/e/v'), { message: new RegExp(`${name} is read by a vgrid vol export on \\S+, which removes it when it ends: wait for it`) })

  await reader.close()
  await until(async () => !(await a.snapshots('/e/v')).includes(name), 20_000, `${name} removed once nothing reads it`)
  const logged = a.lines.find(l => l.includes('removed an export snapshot whose export is gone') && l.includes(name))
  t.truthy(logged, a.lines.join('\n'))
  t.regex(logged!, /why="its export ended: the vgrid vol export that held it is gone and no NBD session reads it"/)
  t.regex(logged!, /volume=\/e\/v/)

  // nothing blocks its removal now
  await writer.close()
  t.regex(await a.cli('rm', '/e/v'), /\/e\/v/)
})

test.serial('an export snapshot whose agent died is removed when the agent runs again; a user\'s snapshot named like one stays', async t => {
  const a = await agent(t, 'gvsexprestart')
  await a.cli('create', '/e/w', '--size', '8M')
  // a user's snapshot under an export's name: nothing records an export of it
  await a.cli('snapshot', '/e/w', 'export-20260101T000000-user')
  const sock = join(a.dir, 'nbd.sock')
  const w = await NbdClient.open(sock, 'e/w')
  await w.write(0, Buffer.alloc(4096, 0x11))
  await w.flush()
  const api = new ApiClient(a.api)
  const taken = await api.request<{ snapshot: string, leaseMs: number, volume: VolumeView }>('POST', '/v1/volumes/%2Fe%2Fw/export-snapshot')
  const name = taken.snapshot
  t.is(taken.leaseMs, LEASE_MS)
  t.like(taken.volume.snapshots.find(s => s.name === name), { export: { node: a.self } })
  t.regex(await a.cli('info', '/e/w'), new RegExp(`${name} \\([^)]*, read by a vgrid vol export on \\S+\\)`))
  // a clone of it reads through its layers: they outlive the snapshot
  await a.cli('clone', `/e/w@${name}`, '/e/c')
  await w.write(0, Buffer.alloc(4096, 0x22))
  await w.flush()
  await w.close()
  const run1 = a.svc.exportSweeper.run
  t.like(a.replica.read().list('volumes').find(v => v.path === '/e/w')?.snapshots[name], { export: { node: a.self, run: run1 } })
  // bad input: the agent names the snapshot; a field is refused, naming it; only an export's snapshot here has a lease
  await t.throwsAsync(api.request('POST', '/v1/volumes/%2Fe%2Fw/export-snapshot', { name: 'mine' }), { message: /unknown field "name": this request takes only quiet \(the agent names the export's snapshot\)/ })
  await t.throwsAsync(api.request('POST', '/v1/volumes/%2Fe%2Fw/export-snapshot', { quiet: 'yes' }), { message: /quiet must be true or false/ })
  await t.throwsAsync(api.request('POST', '/v1/volumes/%2Fe%2Fnope/export-snapshot'), { message: /no volume with id or path "\/e\/nope"/ })
  await t.throwsAsync(api.request('POST', '/v1/volumes/%2Fe%2Fw/snapshots/export-20260101T000000-user/lease'), { message: /\/e\/w@export-20260101T000000-user is not a snapshot vgrid vol export took: it has no lease to renew \(not_export\)/ })
  await t.throwsAsync(api.request('POST', '/v1/volumes/%2Fe%2Fw/snapshots/nope/lease'), { message: /volume "\/e\/w" has no snapshot "nope"/ })
  t.like(await api.request('POST', `/v1/volumes/%2Fe%2Fw/snapshots/${name}/lease`), { snapshot: name, leaseMs: LEASE_MS })

  // the agent dies while the export holds it (its lease runs on): nothing of that run removes it
  await a.restart()
  t.not(a.svc.exportSweeper.run, run1)
  await until(async () => !(await a.snapshots('/e/w')).includes(name), 10_000, `${name} removed by the agent's next run`)
  t.truthy(a.lines.find(l => l.includes('removed an export snapshot whose export is gone') && l.includes(name) && l.includes('an earlier run of the agent on this node')), a.lines.join('\n'))
  await sleep(500)
  t.deepEqual(await a.snapshots('/e/w'), ['export-20260101T000000-user'], 'a user\'s snapshot is never removed')
  t.deepEqual(await a.svc.exportSweeper.sweep(), [])
  // the clone keeps what it was made from, also once the snapshot's layer is folded and freed
  await a.svc.fold()
  await a.svc.reconcile()
  const c = await NbdClient.open(sock, 'e/c')
  t.true((await c.read(0, 4096)).equals(Buffer.alloc(4096, 0x11)), 'data shared with a clone is never freed')
  await c.close()
  // the user's export snapshot still names what it is when it blocks a rm
  await t.throwsAsync(a.cli('rm', '/e/w'), { message: /export-20260101T000000-user is named like an export's but records no export: left by an interrupted export of an earlier release, or a user's own/ })

  // an export of a volume no one was seen using takes a quiet snapshot, which a vol rm takes
  // with the volume while the export runs, as before such exports took one (rv49)
  await a.cli('create', '/e/q', '--size', '8M')
  const quiet = await new ApiClient(a.api).request<{ snapshot: string, volume: VolumeView }>('POST', '/v1/volumes/%2Fe%2Fq/export-snapshot', { quiet: true })
  t.like(a.replica.read().list('volumes').find(v => v.path === '/e/q')?.snapshots[quiet.snapshot], { export: { node: a.self, quiet: true } })
  t.regex(await a.cli('rm', '/e/q'), /removed \/e\/q/)
  t.is(a.replica.read().list('volumes').find(v => v.path === '/e/q'), undefined)
})
