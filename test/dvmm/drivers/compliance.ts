// The one behaviour every VM driver must have (process, qemu, fake), as
// automerge-repo's storage adapters share one test suite: a driver's test file calls
// driverCompliance(test, fixture) with how to make its driver and its kinds of guest.
import type { TestFn, ExecutionContext } from 'ava'
import { DriverError, type DriverErrorCode, type DriverVmSpec, type VmDriver, type VmExit } from '../../../node/dvmm/drivers/types.ts'

export interface DriverFixture {
  name: string
  /** Why this driver cannot be tested here; the suite skips with it. */
  skip?: string
  /** A new driver instance for this node (same data dir): each call is a new "agent run". */
  create: () => Promise<VmDriver>
  specs: {
    /** A guest that runs until stopped and prints readyLine on its console. */
    running: (id: string) => DriverVmSpec
    /** A guest that ends by itself with `code`. */
    exits: (id: string) => { spec: DriverVmSpec, code: number }
    /** A guest that ignores a graceful stop. */
    ignoresStop: (id: string) => DriverVmSpec
    /** A spec of the right shape that cannot run here, and the field at fault. */
    badBoot: (id: string) => { spec: DriverVmSpec, field: string }
  }
  readyLine: string
  readyTimeoutMs: number
}

export async function waitFor<T> (what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, everyMs = 50): Promise<T> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined && v !== false) return v
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
}

export function driverCompliance (test: TestFn, f: DriverFixture): void {
  const title = (s: string): string => `${f.name} driver: ${s}`
  if (f.skip !== undefined) {
    console.log(`${f.name} driver compliance: skipped: ${f.skip}`)
    test.skip(title(`compliance (skipped: ${f.skip})`), () => {})
    return
  }
  let n = 0
  const vmId = (): string => `c-${f.name}-${process.pid}-${n++}`

  /** A driver for this test, and a teardown that kills the test's VMs by id whatever happened. */
  async function setup (t: ExecutionContext, ids: string[]): Promise<VmDriver> {
    const d = await f.create()
    t.teardown(async () => {
      const c = await f.create()
      for (const id of ids) {
        try { await c.kill(id) } catch {}
        try { await c.remove(id) } catch {}
      }
      await c.close()
      await d.close()
    })
    return d
  }

  function exitOf (d: VmDriver, id: string): Promise<VmExit> {
    return new Promise(resolve => { d.on('exit', e => { if (e.id === id) resolve(e) }) })
  }

  test.serial(title('probe says whether and how it runs VMs'), async t => {
    const d = await setup(t, [])
    const p = await d.probe()
    t.true(p.ok, p.detail)
    t.true(p.detail.length > 0)
  })

  test.serial(title('start, inspect, list, console, graceful stop'), async t => {
    const id = vmId()
    const d = await setup(t, [id])
    const states: string[] = []
    d.on('state', e => { if (e.id === id) states.push(e.state) })
    const before = Date.now()
    const info = await d.start(f.specs.running(id))
    t.is(info.state, 'running')
    t.is(info.id, id)
    t.true(typeof info.pid === 'number')
    t.true(info.startedAt! >= before - 1000 && info.startedAt! <= Date.now() + 1000, `startedAt ${info.startedAt} near now`)
    t.is((await d.inspect(id))?.state, 'running')
    t.true((await d.list()).some(v => v.id === id && v.state === 'running'))
    await waitFor('the ready line on the console', async () => (await d.consoleTail(id)).includes(f.readyLine), f.readyTimeoutMs)
    // the tail with the offset it ends at, from one read, and the run it is of (vm console --follow)
    const read1 = await d.consoleRead?.(id, 64 * 1024)
    if (read1 != null) {
      t.true(read1.text.includes(f.readyLine))
      t.true(read1.size >= Buffer.byteLength(read1.text), `the tail ends at ${read1.size}`)
      t.is(read1.run, info.startedAt ?? null)
      t.is(read1.size - read1.start, Buffer.byteLength(read1.text), 'the text spans [start, size)')
      // past a follower's end only what came since; asked with another run, the tail
      const after = await d.consoleRead!(id, 64 * 1024, { from: read1.size, run: read1.run })
      t.is(after.start, read1.size)
      t.true(after.size >= read1.size)
      const other = await d.consoleRead!(id, 64 * 1024, { from: read1.size, run: (read1.run ?? 0) + 1 })
      t.is(other.start, Math.max(0, other.size - 64 * 1024))
    }
    const exited = exitOf(d, id)
    const stopped = await d.stop(id, 30_000)
    t.is(stopped.state, 'stopped')
    t.is(stopped.exit?.reason, 'stopped')
    t.is((await exited).reason, 'stopped')
    t.deepEqual(states, ['starting', 'running', 'stopping', 'stopped'])
    t.is((await d.inspect(id))?.state, 'stopped')
    // started again: its console starts with the run before's (bb34: a crash's output went with the restart)
    await d.start(f.specs.running(id))
    const con = await d.consoleTail(id)
    const mark = con.indexOf('[vgrid: the run before ended (stopped')
    t.true(mark > 0 && con.slice(0, mark).includes(f.readyLine), con.slice(-2000))
    t.regex(con, /\[vgrid: the run before ended \(stopped[^\n]*\); a new run starts at \d{4}-\d\d-\d\dT[^\n]*\]\n/)
    // a new run: another run stamp, so a follower does not read its log as the old one grown
    if (read1 != null) t.not((await d.consoleRead!(id, 64 * 1024)).run, read1.run)
    await d.kill(id)
  })

  test.serial(title('stop kills a guest that ignores it after the grace time'), async t => {
    const id = vmId()
    const d = await setup(t, [id])
    await d.start(f.specs.ignoresStop(id))
    await waitFor('the ready line', async () => (await d.consoleTail(id)).includes(f.readyLine), f.readyTimeoutMs)
    const t0 = Date.now()
    const info = await d.stop(id, 400)
    t.true(Date.now() - t0 >= 400, 'waited the grace time first')
    t.is(info.state, 'stopped')
    t.is(info.exit?.reason, 'killed')
  })

  test.serial(title('kill needs no guest cooperation'), async t => {
    const id = vmId()
    const d = await setup(t, [id])
    await d.start(f.specs.ignoresStop(id))
    const exited = exitOf(d, id)
    const info = await d.kill(id)
    t.is(info.state, 'stopped')
    t.is(info.exit?.reason, 'killed')
    t.is((await exited).reason, 'killed')
  })

  test.serial(title('a guest that ends by itself is reported with its code'), async t => {
    const id = vmId()
    const d = await setup(t, [id])
    const { spec, code } = f.specs.exits(id)
    const exited = exitOf(d, id)
    await d.start(spec)
    const e = await exited
    t.is(e.code, code)
    t.is(e.reason, code === 0 ? 'exited' : 'crashed')
    const info = await d.inspect(id)
    t.is(info?.state, code === 0 ? 'stopped' : 'failed')
    if (code !== 0) t.truthy(info?.error)
  })

  test.serial(title('a new driver instance (agent restart) finds the running VM and can stop it'), async t => {
    const id = vmId()
    const first = await setup(t, [id])
    const started = await first.start(f.specs.running(id))
    await first.close() // the agent dies; the VM runs on
    const second = await f.create()
    t.teardown(async () => { await second.close() })
    const found = (await second.list()).find(v => v.id === id)
    t.is(found?.state, 'running')
    t.is(found?.pid, started.pid)
    t.is(found?.startedAt, started.startedAt)
    await waitFor('the ready line', async () => (await second.consoleTail(id)).includes(f.readyLine), f.readyTimeoutMs)
    const exited = exitOf(second, id)
    const info = await second.stop(id, 30_000)
    t.is(info.exit?.reason, 'stopped')
    t.is((await exited).reason, 'stopped')
  })

  test.serial(title('bad specs are refused naming the field'), async t => {
    const id = vmId()
    const d = await setup(t, [id])
    const good = f.specs.running(id)
    const refuse = async (spec: unknown, field: string, code: DriverErrorCode = 'bad-spec'): Promise<void> => {
      const err = await t.throwsAsync(d.start(spec as DriverVmSpec), { instanceOf: DriverError })
      t.is(err?.code, code, err?.message)
      t.is(err?.field, field, err?.message)
    }
    await refuse({ ...good, memoryMiB: 0 }, 'memoryMiB')
    await refuse({ ...good, vcpus: -1 }, 'vcpus')
    await refuse({ ...good, id: '../etc' }, 'id')
    await refuse({ ...good, boot: { kind: 'floppy' } }, 'boot.kind')
    await refuse(null, 'spec')
    const bad = f.specs.badBoot(id)
    await refuse(bad.spec, bad.field)
    t.is(await d.inspect(id), undefined, 'a refused spec leaves nothing behind')
    await d.start(good)
    await refuse(good, 'id', 'exists')
    await d.kill(id)
    const nf = await t.throwsAsync(d.stop('no-such-vm', 10), { instanceOf: DriverError })
    t.is(nf?.code, 'not-found')
    await d.remove(id)
    t.is(await d.inspect(id), undefined)
  })
}
