// ava's configuration. A file (not package.json) for its one function: the order test
// files start in. The end-to-end files run one at a time (test/harness: a machine-wide
// lock), and in name order they all came together: the second of ava's two slots then
// waited on the lock through the whole e2e part (623 s of a 2,353 s CI run). They now
// start first, each followed by its share of the unit test files, which are short and
// start no grid, so that slot runs those while an e2e test holds the lock.
import { readdirSync } from 'node:fs'
import { join, sep } from 'node:path'

const root = join(import.meta.dirname, 'test')
const files = readdirSync(root, { recursive: true }).filter(f => f.endsWith('.test.ts')).map(f => join(root, f)).sort()
const under = dir => f => f.startsWith(join(root, dir) + sep)
const e2e = files.filter(under('e2e'))
const unit = files.filter(under('unit'))
const share = Math.ceil(unit.length / Math.max(1, e2e.length))
const order = [
  ...e2e.flatMap((f, i) => [f, ...unit.slice(i * share, (i + 1) * share)]),
  ...unit.slice(e2e.length * share),
  ...files.filter(f => !under('e2e')(f) && !under('unit')(f))
]
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
