import { join } from 'node:path'

/** Where the watchdog and its agent meet, under the data dir. */
export function watchdogPaths (dataDir: string): { dir: string, feed: string, pid: string, fired: string, log: string, ready: string, alive: string, beat: string } {
  const dir = join(dataDir, 'dvmm', 'watchdog')
  return { dir, feed: join(dir, 'feed.json'), pid: join(dir, 'pid.json'), fired: join(dir, 'fired.jsonl'), log: join(dir, 'watchdog.log'), ready: join(dir, 'ready'), alive: join(dir, 'alive.fifo'), beat: join(dir, 'beat') }
}
