// Failure detection across a real network cut: a host cut off from the others is
// marked dead by them and marks them dead itself; once healed, every host sees all
// three alive again within a bound. Once with nftables rules, once with the link down.
import { e2e, Grid, secs } from '../harness/index.ts'

/** Membership declares a silent member dead after 4.5 s; allow for scheduling on a busy machine. */
const DEAD_BOUND_MS = 15_000
/** Healing needs redials (backoff up to 5 s) and a fresh advert: 20 s is generous. */
const HEAL_BOUND_MS = 20_000

for (const how of ['firewall', 'link'] as const) {
  e2e(`a host cut off (${how}) is dead to the others and they to it; after healing all are alive again`, async t => {
    const grid = await Grid.start(t, { hosts: 3 })
    await grid.waitAllAlive(HEAL_BOUND_MS)

    const cutAt = Date.now()
    await grid.cut('h3', { how })
    const othersSee = grid.waitState(['h1', 'h2'], 'h3', 'dead', DEAD_BOUND_MS)
    const itSees = grid.waitViews(['h3'], v => v.h3!.h1 === 'dead' && v.h3!.h2 === 'dead', DEAD_BOUND_MS, 'h1 and h2 dead on h3')
    await Promise.all([othersSee, itSees])
    const deadMs = Date.now() - cutAt
    t.log(`after the cut: h3 dead on h1, h2 and they dead on h3 within ${secs(deadMs)}`)
    // h1 and h2 still see each other: only h3 was cut off
    const v = await grid.views(['h1', 'h2'])
    t.is((v.h1 as Record<string, string>).h2, 'alive')
    t.is((v.h2 as Record<string, string>).h1, 'alive')

    await grid.heal('h3')
    const healMs = await grid.waitAllAlive(HEAL_BOUND_MS)
    t.log(`healed: all 3 alive on every host after ${secs(healMs)} (bound ${secs(HEAL_BOUND_MS)})`)
    t.true(healMs <= HEAL_BOUND_MS)
  })
}
