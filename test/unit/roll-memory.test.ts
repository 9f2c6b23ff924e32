import test from 'ava'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseRollSeen, RollMemory } from '../../node/membership/roll-memory.ts'
import { silentLogger, type Logger } from '../../node/log.ts'

test('a member whose roll entry has not arrived yet is not forgotten; one taken off the roll is', t => {
  const m = new RollMemory()
  // h2 joined and was killed before its roll entry reached this agent (CI: it vanished from `vgrid nodes`)
  t.false(m.forgotten('h2', [{ node: 'h1' }]))
  m.note([{ node: 'h1' }, { node: 'h2' }])
  t.false(m.forgotten('h2', [{ node: 'h1' }, { node: 'h2' }]))
  // vgrid node forget h2
  t.true(m.forgotten('h2', [{ node: 'h1' }]))
  // back on the roll (it rejoined): shown again
  t.false(m.forgotten('h2', [{ node: 'h1' }, { node: 'h2' }]))
})

test('an entry seen only at the moment of the question counts as seen', t => {
  const m = new RollMemory()
  t.false(m.forgotten('h3', [{ node: 'h3' }]))
  t.true(m.forgotten('h3', []))
})

test('what was seen is kept in the data dir: an agent restarted after a forget still tells the forgotten member (its folds waited 10 minutes on it); a damaged file is read as empty, saying so', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'roll-seen-'))
  const made: RollMemory[] = []
  // a save still under way would make the directory again after it was removed
  t.teardown(async () => { await Promise.all(made.map(async m => { await m.stop() })); rmSync(dir, { recursive: true, force: true }) })
  const path = join(dir, 'roll-seen.json')
  const lines: string[] = []
  const log = { ...silentLogger, warn: (msg: string) => { lines.push(msg) }, child: () => log } as unknown as Logger
  const first = new RollMemory({ path, log })
  made.push(first)
  first.note([{ node: 'h1' }, { node: 'old4' }])
  await until(() => existsSync(path) && readFileSync(path, 'utf8').includes('old4'))
  t.deepEqual(JSON.parse(readFileSync(path, 'utf8')), { v: 1, nodes: ['h1', 'old4'] })
  // the next run: old4 was forgotten while it was down
  const next = new RollMemory({ path, log })
  made.push(next)
  t.true(next.forgotten('old4', [{ node: 'h1' }, { node: 'new4' }]))
  t.false(next.forgotten('unseen', [{ node: 'h1' }]), 'one never on the roll here still counts as not arrived')
  writeFileSync(path, '{"v":1,"nodes":[1,2]}')
  const damaged = new RollMemory({ path, log })
  made.push(damaged)
  t.false(damaged.forgotten('old4', [{ node: 'h1' }]))
  t.true(lines.some(l => l.includes('the node ids seen on the roll') && l.includes('damaged')), lines.join('\n'))
  t.regex((parseRollSeen('nope') as { error: string }).error, /^not JSON: /)
})

async function until (check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise(resolve => setTimeout(resolve, 10))
}

test('a node back on the roll after it was taken off while this run watched is told once; the first note of a run tells nothing', t => {
  const m = new RollMemory()
  t.deepEqual(m.note([{ node: 'h1' }, { node: 'h2' }]), [], 'the first note: nothing to compare with')
  t.deepEqual(m.note([{ node: 'h1' }]), [], 'forgotten')
  t.true(m.forgotten('h2', [{ node: 'h1' }]))
  t.deepEqual(m.note([{ node: 'h1' }, { node: 'h2' }, { node: 'h3' }]), ['h2'], 'back (h3 is new, not back)')
  t.deepEqual(m.note([{ node: 'h1' }, { node: 'h2' }, { node: 'h3' }]), [], 'said once')
})

test('a node that finds itself taken off the roll (forgotten while it was down or cut off) is told once, and again only after it was back (bb35: it said nothing)', t => {
  const m = new RollMemory()
  t.false(m.selfForgotten('me', [{ node: 'me' }, { node: 'b' }]), 'on the roll')
  t.true(m.selfForgotten('me', [{ node: 'b' }]), 'taken off')
  t.false(m.selfForgotten('me', [{ node: 'b' }]), 'told once')
  t.false(m.selfForgotten('me', [{ node: 'me' }, { node: 'b' }]), 'back')
  t.true(m.selfForgotten('me', [{ node: 'b' }]), 'taken off again')
  t.false(new RollMemory().selfForgotten('new', [{ node: 'b' }]), 'a node never on the roll is joining, not forgotten')
})

test('a node that left the grid by itself does not take itself for forgotten at its next start, before its roll entry is back (rv40)', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-roll-left-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const path = join(dir, 'roll-seen.json')
  const m = new RollMemory({ path, log: silentLogger })
  m.note([{ node: 'me' }, { node: 'b' }])
  m.left('me', [{ node: 'me' }, { node: 'b' }])
  t.true(m.forgotten('me', [{ node: 'b' }]), 'still on the roll when told: not a leave (the entry did not go)')
  m.left('me', [{ node: 'b' }])
  await m.stop()
  const next = new RollMemory({ path, log: silentLogger })
  t.false(next.selfForgotten('me', [{ node: 'b' }]), 'the next run, its entry not written yet: not forgotten')
  next.note([{ node: 'b' }])
  next.note([{ node: 'me' }, { node: 'b' }])
  t.true(next.forgotten('b', [{ node: 'me' }]), 'the others stay remembered')
})

test('a new member whose roll entry a question saw first, between two notes, is not told as back (CI: "back on the member roll" of an agent that had just joined)', t => {
  const m = new RollMemory()
  m.note([{ node: 'a' }])
  t.false(m.forgotten('new', [{ node: 'a' }, { node: 'new' }]), 'seen by a question (vgrid state, a fold) first')
  t.deepEqual(m.note([{ node: 'a' }, { node: 'new' }]), [], 'it joined: not back')
  m.note([{ node: 'a' }])
  t.deepEqual(m.note([{ node: 'a' }, { node: 'new' }]), ['new'], 'taken off and back: told')
})
