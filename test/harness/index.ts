// The e2e harness's entry point. An e2e test file does:
//
//   import { e2e, Grid } from '../harness/index.ts'
//   e2e('three hosts join', async t => {
//     const grid = await Grid.start(t, { hosts: 3 })
//     t.true(await grid.waitAllAlive(20_000) < 20_000)
//   })
//
// e2e() skips (with the reason printed) where namespaces cannot be made, runs the
// file's tests one after another, and holds a machine-wide lock while a test runs:
// ava runs test files in parallel processes, and two grids of agents competing for
// two cores would make failure detection (seconds of silence) flaky.
import test, { type ExecutionContext } from 'ava'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { checkSupport } from '../../node/netns/netns.ts'
import { acquireLock } from './lock.ts'
import { ROOT } from '../../node/paths.ts'
import { tmpdir } from 'node:os'
import { buildGuestImage, type GuestImage } from '../../node/dvmm/image/build.ts'

export { acquireLock } from './lock.ts'
export { Grid, Host, KIND, onInterrupt, offInterrupt, type Cleanup, type GridOptions, type HostSpec } from './grid.ts'

/** Whether this machine can run e2e tests, and if not, why. */
export const support = checkSupport({ nft: true })

let toldSkip = false

/** Registers a serial e2e test, or a skipped one saying why it cannot run here. */
export function e2e (title: string, fn: (t: ExecutionContext) => Promise<void>): void {
  if (!support.ok) {
    if (!toldSkip) {
      toldSkip = true
      process.stderr.write(`e2e tests skipped: ${support.reason}\n`)
    }
    test.skip(`${title} (skipped: ${support.reason})`, () => {})
    return
  }
  test.serial(title, async t => {
    const waited = Date.now()
    const release = await acquireLock()
    // registered first, so it runs last: after the grid of this test is gone
    t.teardown(release)
    const start = Date.now()
    await fn(t)
    const waitedS = (start - waited) / 1000
    t.log(`took ${((Date.now() - start) / 1000).toFixed(1)} s` + (waitedS > 0.5 ? ` (after ${waitedS.toFixed(1)} s waiting for another e2e test)` : ''))
  })
}

/**
 * The guest appliance for qemu VMs, built once per machine into a cache. Where it cannot
 * be built the test passes with the reason logged, unless VGRID_TEST_REQUIRE_GUEST=1
 * (test/run.sh sets it once it has installed the kernel and busybox packages): then it
 * fails, so a broken image build never passes CI silently.
 */
export function guestImage (t: ExecutionContext): GuestImage | undefined {
  try {
    return buildGuestImage(join(tmpdir(), 'vgrid-e2e-images'))
  } catch (err) {
    const why = `no guest image: ${(err as Error).message}`
    if (process.env.VGRID_TEST_REQUIRE_GUEST === '1') t.fail(`${why} (VGRID_TEST_REQUIRE_GUEST=1: test/run.sh installed what the image needs)`)
    else { t.log(`SKIPPED: ${why}`); t.pass() }
    return undefined
  }
}

/**
 * Whether `bin/vgrid` runs the build in dist/ (as it does while dist/.built is newer
 * than every source, see bin/vgrid) rather than the TypeScript sources. From the
 * sources an agent takes several times as long to start (on a busy 2-core machine
 * 6-11 s instead of 0.5-2 s); tests whose path depends on it say which it was.
 */
export function agentsRunBuild (): { ok: boolean, reason?: string } {
  let built: number
  try {
    built = statSync(join(ROOT, 'dist/.built')).mtimeMs
  } catch {
    return { ok: false, reason: 'agents run from the sources: there is no build in dist/ (npm run build)' }
  }
  const newer = (dir: string): string | undefined => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name)
      if (e.isDirectory()) { const n = newer(p); if (n != null) return n } else if (e.name.endsWith('.ts') && statSync(p).mtimeMs > built) return p
    }
    return undefined
  }
  for (const d of ['node', 'protocol', 'crdt']) {
    const n = newer(join(ROOT, d))
    if (n != null) return { ok: false, reason: `agents run from the sources: ${n.slice(ROOT.length + 1)} is newer than the build in dist/ (npm run build)` }
  }
  return { ok: true }
}

/** Seconds with one decimal, for the timings tests print. */
export function secs (ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`
}
