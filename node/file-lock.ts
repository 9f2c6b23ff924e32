// An exclusive lock on a file for as long as this process lives, held by flock(1)
// (util-linux, on every Debian; Node has no flock of its own): `flock -n -o FILE cat`
// holds it while its cat reads this process's end of a pipe, which the kernel closes when
// this process ends, however it ends, so a crashed agent leaves no stale lock. The file is in
// a directory only root may enter: no other user can take the lock first. Abstract unix
// socket names, used before, are open to every user of the namespace, and one who bound
// an agent's name kept it from starting again (bb48).
import { spawn } from 'node:child_process'
import type { Socket } from 'node:net'

/** flock's exit code when another holds the lock (--conflict-exit-code) */
const HELD = 75

/** `release` resolves once the lock is let go (its holder has exited: rv48, a take right after a release was told it was held) */
export interface FileLock { release: () => Promise<void>, /** its holder's (flock's) */ pid: number | undefined }

/**
 * Takes the lock on `file` (made if missing), or null when another process holds it.
 * `onLost`: called if the lock goes while this process still wants it (its holder was
 * killed: rv48, it went without a word).
 */
export async function takeFileLock (file: string, onLost?: (why: string) => void): Promise<FileLock | null> {
  // a process group of its own: a Ctrl-C to the agent's group (a graceful leave) must not
  // end it while the agent still stops (rv47); the end of its stdin still does
  // --close: flock alone holds the locked descriptor (its cat does not inherit it), so the
  // lock goes the moment flock does, and a release that waits for flock's exit waits for
  // the lock's (rv49: cat, holding it a moment longer, failed a take right after)
  const child = spawn('flock', ['--nonblock', '--exclusive', '--close', '--conflict-exit-code', String(HELD), file, 'sh', '-c', 'echo locked && exec cat > /dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], detached: true })
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  return await new Promise<FileLock | null>((resolve, reject) => {
    child.once('error', e => { reject(new Error(`flock (util-linux) could not be run: ${e.message}`)) })
    child.once('exit', code => {
      if (code === HELD) resolve(null)
      else reject(new Error(`flock ${file} failed (exit ${String(code)})${err.trim() === '' ? '' : `: ${err.trim()}`}`))
    })
    child.stdout.once('data', () => {
      child.removeAllListeners('exit')
      // held while this process lives: nothing of it keeps the event loop going
      child.stdout.destroy()
      child.stderr.destroy()
      ;(child.stdin as unknown as Socket).unref()
      child.unref()
      let released = false
      const exited = new Promise<void>(resolve => {
        child.once('exit', (code, signal) => {
          resolve()
          if (!released) onLost?.(`its holder (flock, pid ${String(child.pid)}) ended${signal != null ? ` by ${signal}` : ` with status ${String(code)}`}`)
        })
      })
      resolve({
        pid: child.pid,
        release: async () => {
          if (!released) {
            released = true
            // waited for: the loop is kept going until it has let go
            child.ref()
            child.stdin.end()
            child.kill()
          }
          await exited
        }
      })
    })
  })
}
