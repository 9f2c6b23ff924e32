// Label values: every control character (C0, DEL, C1) and lone surrogates are refused,
// by the writer and by the schema (the check peers' changes go through).
import test from 'ava'
import { isLabelValue, validateObject, Replica, InvalidObjectError } from '../../crdt/index.ts'

const refused = ['tab\t', 'nul\u0000', 'del\u007f', 'c1 \u0080', 'nel \u0085', 'c1 \u009f', 'lone \ud800', 'lone \udc00 low', 'reversed \udc00\ud800']
const accepted = ['', 'plain', 'é ü', 'nbsp \u00a0', 'emoji 😀', 'cjk 日本', 'x'.repeat(256)]

test('label values: controls and lone surrogates are refused, the rest of Unicode is not', t => {
  const r = Replica.create({ clusterId: 'c', nodeId: 'N' })
  for (const v of refused) {
    t.false(isLabelValue(v), JSON.stringify(v))
    t.regex(validateObject('nodeLabels', 'N/k', { node: 'N', key: 'k', value: v, at: 1, by: 'N' }) ?? '', /value/, JSON.stringify(v))
    t.throws(() => r.change(w => w.setLabel('N', 'k', v)), { instanceOf: InvalidObjectError, message: /control characters .* lone surrogates/ })
  }
  for (const v of accepted) {
    t.true(isLabelValue(v), JSON.stringify(v))
    t.is(validateObject('nodeLabels', 'N/k', { node: 'N', key: 'k', value: v, at: 1, by: 'N' }), null, JSON.stringify(v))
  }
  t.false(isLabelValue('x'.repeat(257)))
})
