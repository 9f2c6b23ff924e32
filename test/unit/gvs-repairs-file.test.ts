// The last repairs' file (node/gvs/repairs-file.ts): what one run writes the next reads
// back, long lists are cut with unhealed scrub findings kept first, and a damaged or
// foreign file is reported and read as empty, never thrown.
import test from 'ava'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { KEEP, RepairsFile, formatRepairs, parseRepairs } from '../../node/gvs/repairs-file.ts'
import type { LastRepair } from '../../node/gvs/health.ts'
import { createLogger, silentLogger } from '../../node/log.ts'

const repair = (extra: Partial<LastRepair> = {}): LastRepair =>
  ({ node: 'n1', at: 1000, copied: 3, failed: 1, bytes: 4096, lost: 0, unsound: 1, errors: ['scrub: object 1 ...'], lostObjects: [], scrubbed: [{ layer: 'vol-a', index: 1, node: 'n1', healed: false, error: 'no sound copy' }], ...extra })

test('a saved record reads back whole; a new file replaces the old', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvsrepairs-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const f = new RepairsFile(join(dir, 'gvs-repairs.json'), silentLogger)
  t.deepEqual(f.load(), new Map(), 'no file: nothing')
  const last = new Map([['vol-a', repair()], ['vol-b', repair({ unsound: undefined, scrubbed: undefined, failed: 0 })]])
  delete last.get('vol-b')!.unsound
  delete last.get('vol-b')!.scrubbed
  await f.save(last)
  t.deepEqual(f.load(), last)
  last.delete('vol-a')
  await f.save(last)
  t.deepEqual([...f.load().keys()], ['vol-b'])
})

test('long lists are cut to KEEP, the unhealed findings first', t => {
  const scrubbed = [
    ...Array.from({ length: KEEP + 5 }, (_, i) => ({ layer: 'vol-a', index: i, node: 'n1', healed: true })),
    { layer: 'vol-a', index: 999, node: 'n2', healed: false, error: 'every copy damaged' }
  ]
  const r = parseRepairs(formatRepairs(new Map([['vol-a', repair({ errors: Array.from({ length: 500 }, (_, i) => `e${i}`), lostObjects: Array.from({ length: 500 }, (_, i) => i), scrubbed })]])))
  if ('error' in r) return t.fail(r.error)
  const a = r.repairs.get('vol-a')!
  t.is(a.errors.length, KEEP)
  t.is(a.lostObjects.length, KEEP)
  t.is(a.scrubbed!.length, KEEP)
  t.like(a.scrubbed![0], { index: 999, healed: false })
  t.is(a.unsound, 1)
})

test('a damaged or foreign file is read as empty and named in the warning', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvsrepairs-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const path = join(dir, 'gvs-repairs.json')
  const warnings: string[] = []
  const log = createLogger({ write: line => { warnings.push(line) } })
  const cases: Array<[string, RegExp]> = [
    ['{"format":1,"repairs":{"vol-a":{"node":"n"', /not JSON/],
    ['[]', /not an object/],
    ['{"format":2,"repairs":{}}', /format 2, not 1/],
    [JSON.stringify({ format: 1, repairs: { 'vol-a': { ...repair(), failed: -1 } } }), /vol-a: "failed" is not a count/],
    [JSON.stringify({ format: 1, repairs: { 'vol-a': { ...repair(), scrubbed: [{ layer: 1 }] } } }), /"scrubbed" entry/],
    [JSON.stringify({ format: 1, repairs: { 'vol-a': { ...repair(), errors: 'x' } } }), /"errors" is not a list/]
  ]
  for (const [text, why] of cases) {
    await writeFile(path, text)
    warnings.length = 0
    t.deepEqual(new RepairsFile(path, log).load(), new Map(), text)
    t.regex(warnings.join('\n'), why, text)
    t.regex(warnings.join('\n'), /gvs-repairs\.json/)
  }
})
