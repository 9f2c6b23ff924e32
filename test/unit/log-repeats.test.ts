// Repeated log lines (node/log-repeats.ts): the first of a kind at once, the same kind
// again only after the quiet time, saying how many were left out; other kinds apart.
import test from 'ava'
import { createLogger } from '../../node/log.ts'
import { RepeatedLines } from '../../node/log-repeats.ts'

test('a line of a kind a minute, with the count left out; other kinds are logged apart', t => {
  const lines: string[] = []
  const log = createLogger({ write: l => { lines.push(l) } })
  let now = 0
  const r = new RepeatedLines({ now: () => now })
  for (let i = 0; i <= 120; i++) { r.log(log, 'warn', 'disk', 'decision step failed', { err: 'ENOSPC' }); now += 500 }
  r.log(log, 'error', 'other', 'something else')
  t.is(lines.length, 2 + 1, lines.join('\n'))
  t.notRegex(lines[0]!, /repeated/)
  t.regex(lines[1]!, /decision step failed.*repeated="119 more like it in the last 60 s, not logged"/)
  t.regex(lines[2]!, /something else/)
})
