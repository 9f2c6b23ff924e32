// The e2e tests' machine-wide lock, apart from the harness's entry point (which imports
// ava, and ava refuses plain node) so that benchmarks that load both cores take it too.
import { mkdirSync, openSync, closeSync, writeSync, readFileSync, rmSync } from 'node:fs'
import { isAlive } from '../../node/netns/netns.ts'

const LOCK_DIR = '/run/vgrid-harness'
const LOCK = `${LOCK_DIR}/e2e.lock`

/**
 * One e2e test at a time on this machine; a lock whose holder died is taken over.
 * Exported for e2e tests that need no namespace hosts (e.g. install-systemd.test.ts).
 */
export async function acquireLock (onWait?: (holder: number) => void): Promise<() => void> {
  mkdirSync(LOCK_DIR, { recursive: true })
  for (;;) {
    try {
      const fd = openSync(LOCK, 'wx')
      writeSync(fd, String(process.pid))
      closeSync(fd)
      return () => {
        try {
          if (readFileSync(LOCK, 'utf8') === String(process.pid)) rmSync(LOCK)
        } catch {}
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    let holder = NaN
    try { holder = Number(readFileSync(LOCK, 'utf8')) } catch {}
    if (Number.isInteger(holder) && holder > 0 && !isAlive(holder)) {
      try { rmSync(LOCK) } catch {}
      continue
    }
    onWait?.(holder)
    onWait = undefined
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

