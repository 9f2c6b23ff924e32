// The record of layers the document stopped reading (node/gvs/unread-layers.ts): read
// back by the next run, written only when it changed, a damaged one reported once and
// read as none (its copies then stay: nothing is freed on a guess).
import test from 'ava'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { UnreadLayers } from '../../node/gvs/unread-layers.ts'
import { createLogger } from '../../node/log.ts'

async function dir (t: { teardown: (f: () => Promise<void>) => void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'gvs-unread-'))
  t.teardown(async () => { await rm(d, { recursive: true, force: true }) })
  return d
}

test('kept layers are read back by the next run; an unchanged set is not written again', async t => {
  const file = join(await dir(t), 'unread-layers.json')
  const lines: string[] = []
  const log = createLogger({ level: 'debug', write: l => lines.push(l) })
  const a = new UnreadLayers(file, log)
  t.deepEqual([...await a.load()], [], 'no file: none')
  await a.keep(new Set(['vol-a@3', 'vol-b']))
  t.is((await stat(file)).mode & 0o777, 0o600)
  const before = (await stat(file)).mtimeMs
  await new Promise(resolve => setTimeout(resolve, 20))
  await a.keep(new Set(['vol-b', 'vol-a@3']))
  t.is((await stat(file)).mtimeMs, before, 'the same set: no write')
  t.deepEqual([...await new UnreadLayers(file, log).load()].sort(), ['vol-a@3', 'vol-b'])
  await a.keep(new Set())
  t.deepEqual(JSON.parse(await readFile(file, 'utf8')), { v: 1, layers: [] })
  t.deepEqual(lines, [])
})

test('a damaged record is reported once, naming the file, and read as none', async t => {
  const d = await dir(t)
  const cases: Array<[string, string]> = [['garbage', 'not json'], ['shape', '{"v":2,"layers":[]}'], ['names', '{"v":1,"layers":["ok","../etc/passwd"]}']]
  for (const [name, text] of cases) {
    const file = join(d, `${name}.json`)
    await writeFile(file, text)
    const lines: string[] = []
    const r = new UnreadLayers(file, createLogger({ level: 'debug', write: l => lines.push(l) }))
    t.deepEqual([...await r.load()], [], name)
    await r.load()
    t.is(lines.length, 1, `${name}: one warning`)
    t.true(lines[0]!.includes(file), lines[0])
  }
})
