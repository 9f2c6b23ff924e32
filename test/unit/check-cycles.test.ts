// The import-cycle check the test command runs: it finds cycles, type-only and
// dynamic imports included, and ignores imports shown in comments.
import test from 'ava'
import { cycles, importsOf } from '../../scripts/check-cycles.ts'

test('imports are read from code, static, side-effect, type-only, re-exports and dynamic, not from comments', t => {
  const src = [
    '// import { x } from \'./in-a-comment.ts\'',
    '/* import { y } from \'./in-a-block.ts\' */',
    'import { a } from \'./a.ts\'',
    'import type { B } from \'../b.ts\'',
    'export { c } from \'./c.ts\'',
    'const d = await import(\'./d.ts\')',
    'import \'./side-effect.ts\'',
    'import fs from \'node:fs\''
  ].join('\n')
  t.deepEqual(importsOf('/r/x/m.ts', src), ['/r/x/a.ts', '/r/b.ts', '/r/x/c.ts', '/r/x/d.ts', '/r/x/side-effect.ts'])
})

test('a cycle of any length is found, and a tree has none', t => {
  const tree = new Map([['a', ['b', 'c']], ['b', ['c']], ['c', []]])
  t.deepEqual(cycles(tree), [])
  const loop = new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]])
  t.deepEqual(cycles(loop).map(c => [...c].sort()), [['a', 'b', 'c']])
  t.deepEqual(cycles(new Map([['s', ['s']]])), [['s']])
})
