// A plain export's claim (node/gvs/grid-writers.ts otherWriters): a member that does not
// answer is asked again while membership holds it alive or suspect, so a node stalled
// for a moment with a client writing is not taken for one without (two nodes would
// then write at one epoch). A member found dead is not waited for; one alive and silent
// past the bound fails the write, naming it.
import test from 'ava'
import { GridWriters } from '../../node/gvs/grid-writers.ts'
import type { StatusAnswer } from '../../node/gvs/status-protocol.ts'
import type { Member, MemberTable } from '../../protocol/membership.ts'
import { silentLogger } from '../../node/log.ts'

const SELF = 'n-a'
const member = (nodeId: string, state: string): Member => ({ nodeId, state, advert: { name: nodeId } } as unknown as Member)

function grid (states: Record<string, string>, answer: (node: string, round: number) => StatusAnswer | 'silent', passUnreached?: (volume: string, node: string) => string | null): { gw: GridWriters, table: Map<string, Member>, asked: Map<string, number> } {
  const table = new Map<string, Member>(Object.entries(states).map(([n, s]) => [n, member(n, s)]))
  const asked = new Map<string, number>()
  const gw = new GridWriters({
    self: SELF,
    log: silentLogger,
    members: () => table as MemberTable,
    liveIds: () => new Set(table.keys()),
    passUnreached,
    status: {
      ask: async (node: string) => {
        const round = asked.get(node) ?? 0
        asked.set(node, round + 1)
        const a = answer(node, round)
        if (a === 'silent') { await new Promise(resolve => setTimeout(resolve, 20)); throw new Error('no answer in time') }
        return a
      }
    }
  })
  return { gw, table, asked }
}

test('a node that misses one answer is asked again: its writing client refuses the claim', async t => {
  const { gw, asked } = grid({ [SELF]: 'alive', 'n-b': 'alive', 'n-c': 'alive' }, (node, round) =>
    node === 'n-b' && round === 0 ? 'silent' : { vol: { writers: node === 'n-b' ? 1 : 0, claiming: false } } as unknown as StatusAnswer)
  t.regex(await gw.otherWriters('vol') ?? '', /1 client\(s\) on n-b/)
  t.is(asked.get('n-b'), 2)
  t.is(asked.get('n-c'), 1, 'one that answered is not asked again')
})

test('a silent node that membership finds dead is not waited for', async t => {
  const { gw, table } = grid({ [SELF]: 'alive', 'n-b': 'suspect' }, () => 'silent')
  setTimeout(() => { table.set('n-b', member('n-b', 'dead')) }, 300)
  const started = Date.now()
  t.is(await gw.otherWriters('vol'), null)
  t.true(Date.now() - started >= 250, 'asked while it was suspect')
})

test('a node alive and silent past the bound fails the claim, naming it', async t => {
  const { gw, asked } = grid({ [SELF]: 'alive', 'n-b': 'alive' }, () => 'silent')
  await t.throwsAsync(gw.otherWriters('vol', 500), { message: /n-b did not say within 1 s whether a client writes the volume there, and membership still holds it alive/ })
  t.true(asked.get('n-b')! >= 2)
})

test('a node this one cannot reach (partial partition) is not waited for when the fence covers it (R >= 2): the claim goes on', async t => {
  let out: string | null = null
  const { gw, asked } = grid({ [SELF]: 'alive', 'n-b': 'alive', 'n-c': 'alive' }, node => node === 'n-b' ? 'silent' : { vol: { writers: 0, claiming: false } } as unknown as StatusAnswer,
    (_v, node) => node === 'n-b' ? out : null)
  // not known out of reach yet: asked again until the bound, which fails the claim
  await t.throwsAsync(gw.otherWriters('vol', 300), { message: /n-b did not say/ })
  // found out of reach (no answer to a ping): not asked at all, and the claim goes on at once
  out = 'no answer to a ping within 4 s'
  asked.clear()
  const started = Date.now()
  t.is(await gw.otherWriters('vol', 10_000), null)
  t.true(Date.now() - started < 1000)
  t.is(asked.get('n-b'), undefined)
  t.is(asked.get('n-c'), 1)
})
