// How the CLI shows a node's labels (`vgrid nodes`, `vgrid node label`): one list,
// sorted, with a value that holds the list's own separators quoted (bb20: a value
// "a,zone=b" showed as `k=a,zone=b`, as if the node had zone=b).
import test from 'ava'
import { sayLabels } from '../../node/cli/format.ts'

test('labels: sorted k=v; a value with a comma, "=", space, quote, or none is quoted', t => {
  t.is(sayLabels({ zone: 'eu', rack: 'r7' }), 'rack=r7,zone=eu')
  t.is(sayLabels({ k: 'a,zone=b' }), 'k="a,zone=b"')
  t.is(sayLabels({ k: 'x y', e: '', q: 'say "hi"' }), 'e="",k="x y",q="say \\"hi\\""')
  t.is(sayLabels({}), '')
})
