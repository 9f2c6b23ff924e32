// The fake driver passes the same compliance suite as the real ones.
import test from 'ava'
import { FAKE_READY_LINE, FakeDriver, FakeNode } from '../../../node/dvmm/drivers/fake.ts'
import { driverCompliance } from './compliance.ts'

const node = new FakeNode()
const spec = (id: string, command: string[]) => ({ id, vcpus: 1, memoryMiB: 64, boot: { kind: 'command' as const, command } })

driverCompliance(test, {
  name: 'fake',
  create: async () => new FakeDriver({ clock: Date }, { node }),
  specs: {
    running: id => spec(id, ['fake:run']),
    exits: id => ({ spec: spec(id, ['fake:exit', '3', '50']), code: 3 }),
    ignoresStop: id => spec(id, ['fake:ignore-stop']),
    badBoot: id => ({ spec: spec(id, ['/bin/true']), field: 'boot.command[0]' })
  },
  readyLine: FAKE_READY_LINE,
  readyTimeoutMs: 1000
})

test('fake driver: a probe that says no refuses starts with its reason', async t => {
  const d = new FakeDriver({ clock: Date }, { probe: { ok: false, detail: 'simulated: no room' } })
  const err = await t.throwsAsync(d.start(spec('x', ['fake:run'])))
  t.regex(err?.message ?? '', /simulated: no room/)
})
