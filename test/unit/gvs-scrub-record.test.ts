// The last scrub's record (<data-dir>/gvs-scrub.json) is read back at start: a file of
// the wrong shape (valid JSON, damaged by hand or a bug) is reported and ignored. It was
// trusted, and every volume view, which shows the last scrub's times, answered 500.
import test from 'ava'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ScrubSchedule, asScrubReport } from '../../node/gvs/scrub-schedule.ts'
import { createLogger } from '../../node/log.ts'

const good = { startedAt: 1_700_000_000_000, finishedAt: 1_700_000_001_000, objects: 3, total: 3, bytes: 12, bad: 0, repaired: 0, unrepaired: [], layers: {} }

test('a scrub record of the wrong shape is reported and ignored; a sound one is kept', async t => {
  t.deepEqual(asScrubReport(good), good)
  for (const bad of [{}, [], null, 7, { ...good, startedAt: 'yesterday' }, { ...good, finishedAt: 1e300 }, { ...good, bad: -1 }, { ...good, layers: [] }, { ...good, unrepaired: {} }]) {
    t.is(asScrubReport(bad), null, JSON.stringify(bad))
  }
  const dir = mkdtempSync(join(tmpdir(), 'vgt-scrubrec-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'gvs-scrub.json')
  const lines: string[] = []
  const log = createLogger({ component: 'test', level: 'warn', write: l => { lines.push(l) } })
  const schedule = (): ScrubSchedule => new ScrubSchedule({ self: 'n1', log, transport: null as never, store: null as never, metrics: null, file, sources: () => [] }, { intervalMs: 0 })
  for (const [content, kept] of [[JSON.stringify({}), false], ['{not json', false], [JSON.stringify(good), true]] as const) {
    writeFileSync(file, content)
    const s = schedule()
    await s.start()
    t.is(s.status().last != null, kept, content)
    await s.stop()
  }
  t.is(lines.filter(l => l.includes('gvs-scrub.json')).length, 2, 'each bad file named in a warning')
})
