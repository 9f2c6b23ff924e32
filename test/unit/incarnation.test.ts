// The advert incarnation goes up across restarts whatever the wall clock does: an
// agent restarted with its clock behind its previous run's must still advertise a
// newer version than that run did, or its peers drop its adverts (node/incarnation.ts).
import test from 'ava'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { claimIncarnation, incarnationFile, nextIncarnation } from '../../node/incarnation.ts'
import { createLogger } from '../../node/log.ts'
import { compareVersions } from '../../protocol/membership.ts'

const HOUR = 3_600_000
const T = 1_795_313_547_289

function dataDir (t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-incarnation-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

function logLines (): { log: ReturnType<typeof createLogger>, lines: string[] } {
  const lines: string[] = []
  return { log: createLogger({ write: l => lines.push(l) }), lines }
}

test('nextIncarnation: the wall clock when it is ahead of the last run, else one past the last run', t => {
  t.is(nextIncarnation(T, undefined), T)
  t.is(nextIncarnation(T + 0.7, undefined), T)
  t.is(nextIncarnation(T + 5000, T), T + 5000)
  t.is(nextIncarnation(T - 2 * HOUR, T), T + 1, 'a clock 2 h behind the previous run')
  t.is(nextIncarnation(T, T), T + 1, 'the same millisecond')
})

test('a run restarted with its clock 2 h behind advertises a newer version than the previous run', t => {
  const dir = dataDir(t)
  const { log, lines } = logLines()
  const first = claimIncarnation(dir, log, T)
  t.is(first, T)
  const second = claimIncarnation(dir, log, T - 2 * HOUR)
  t.is(second, T + 1)
  // the previous run's last advert had some seq; the new run starts its count again
  t.is(compareVersions({ incarnation: second, seq: 1 }, { incarnation: first, seq: 5000 }), 1)
  const third = claimIncarnation(dir, log, T + HOUR)
  t.is(third, T + HOUR, 'the wall clock again once it is ahead')
  t.deepEqual(JSON.parse(readFileSync(incarnationFile(dir), 'utf8')), { last: T + HOUR })
  t.is(statSync(incarnationFile(dir)).mode & 0o077, 0)
  t.deepEqual(lines, [], 'nothing to warn about')
})

test('a damaged or unreadable record falls back to the wall clock with a warning naming the file, and is written anew', t => {
  const dir = dataDir(t)
  const file = incarnationFile(dir)
  for (const junk of ['not json', '{"last": "soon"}', '{"last": -1}', '{"last": 1.5}', 'null', '']) {
    const { log, lines } = logLines()
    writeFileSync(file, junk)
    t.is(claimIncarnation(dir, log, T), T, junk)
    t.is(lines.length, 1, junk)
    t.true(lines[0]!.includes('incarnation is damaged') && lines[0]!.includes(file), lines[0])
    t.deepEqual(JSON.parse(readFileSync(file, 'utf8')), { last: T })
  }
  // a directory in its place: read and write fail, the run goes on with the clock
  rmSync(file)
  mkdirSync(file)
  const { log, lines } = logLines()
  t.is(claimIncarnation(dir, log, T), T)
  t.is(lines.length, 2)
  t.true(lines.every(l => l.includes(file)), lines.join('\n'))
})
