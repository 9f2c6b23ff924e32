// ava's configuration. A file (not package.json) for its one function: the order test
// files start in. The files that take the machine-wide e2e lock (test/harness) run one
// at a time, and ava's other slot, given one of them while another held the lock, waited
// (623 s of a 2,353 s CI run in name order, which had them all in a row). Each is now
// followed by its share of every other file, the unit files and the in-process grids
// mixed, so that the other slot has work for as long as a locked file runs: there is
// about twice as much of it as of locked work.
import { readdirSync } from 'node:fs'
import { join, sep } from 'node:path'

const root = join(import.meta.dirname, 'test')
const files = readdirSync(root, { recursive: true }).filter(f => f.endsWith('.test.ts')).map(f => join(root, f)).sort()
const under = dir => f => f.startsWith(join(root, dir) + sep)
// the e2e files, and the one outside test/e2e that starts namespace hosts
const locked = files.filter(f => under('e2e')(f) || f === join(root, 'lcm', 'agent-no-wireguard.test.ts'))
const unit = files.filter(f => under('unit')(f) && !locked.includes(f))
const grids = files.filter(f => !under('unit')(f) && !locked.includes(f))
/** `a` and `b` merged so that each stretch holds both in their proportion */
const mix = (a, b) => [...a.map((f, i) => [(i + 0.5) / a.length, f]), ...b.map((f, i) => [(i + 0.5) / b.length, f])].sort((x, y) => x[0] - y[0]).map(x => x[1])
const rest = mix(grids, unit)
const share = rest.length / Math.max(1, locked.length)
const order = locked.flatMap((f, i) => [f, ...rest.slice(Math.round(i * share), Math.round((i + 1) * share))])
const rank = new Map(order.map((f, i) => [f, i]))
const at = f => rank.get(f) ?? order.length

export default {
  extensions: { ts: 'module' },
  files: ['test/**/*.test.ts'],
  timeout: '3m',
  concurrency: 2,
  workerThreads: false,
  nodeArguments: ['--disable-warning=ExperimentalWarning'],
  // a file not known here (made since) goes last, in name order
  sortTestFiles: (a, b) => at(a) - at(b) || a.localeCompare(b)
}
