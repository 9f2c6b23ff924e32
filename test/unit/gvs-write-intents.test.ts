// The write-intent log (node/gvs/write-intents.ts): an object is named before its first
// write after its last sync, also while the log is being rewritten after a flush, and
// leaves it only once synced with no write under way; a log cut short by a full disk
// still names every object it took whole.
import test from 'ava'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WriteIntents } from '../../node/gvs/write-intents.ts'

const names = (file: string): string[] => readFileSync(file, 'utf8').split('\n').filter(l => l !== '').sort()

test('an object first written while the log is rewritten is named in the new log', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgt-intents-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'intents')
  const w = new WriteIntents(file)
  await w.open()
  const obj = (v: string, i: number): string => join(dir, 'objects', v, i.toString(16).padStart(8, '0'))
  await w.begin(obj('v', 1))
  w.done(obj('v', 1))
  t.deepEqual(names(file), ['v/00000001'])
  // a flush synced it: the log is rewritten without it; a first write to another object comes in meanwhile
  const settling = w.settled(() => false)
  const handle = w as unknown as { fh?: unknown }
  for (let i = 0; i < 2000 && handle.fh != null; i++) await new Promise(resolve => setImmediate(resolve))
  t.is(handle.fh, undefined, 'caught while the log is closed for its rewrite')
  await w.begin(obj('v', 2))
  await settling
  w.done(obj('v', 2))
  t.deepEqual(names(file), ['v/00000002'], 'named though it came during the rewrite')
  // a write under way keeps its object named; pending ones too
  await w.begin(obj('v', 3))
  await w.settled(d => d.endsWith('00000002'))
  t.deepEqual(names(file), ['v/00000002', 'v/00000003'])
  w.done(obj('v', 3))
  await w.settled(() => false)
  t.deepEqual(names(file), [])
  await w.close()
})

test('a line cut short by a full disk does not hide the names around it', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgt-intents-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'intents')
  writeFileSync(file, '\nv/00000001\n\nv/0000\n\nv/00000002\n')
  t.deepEqual((await new WriteIntents(file).pending()).map(p => `${p.volume}/${p.file}`).sort(), ['v/00000001', 'v/00000002'])
})
