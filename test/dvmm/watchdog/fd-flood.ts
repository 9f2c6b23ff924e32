// A stand-in agent whose file descriptors run out (bb24: a flood of API connections):
// it starts the watchdog, takes every descriptor it can, kills its supervisor (a kill
// needs none), holds them over a few feeds, frees them, and says what its watchdog did.
import { closeSync, openSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLogger } from '../../../node/log.ts'
import { Watchdog } from '../../../node/dvmm/watchdog/index.ts'

const [dataDir] = process.argv.slice(2)
const log = createLogger({ write: line => { process.stdout.write(`LOG ${line}\n`) } })
const w = new Watchdog({ log }, { dataDir: dataDir!, timeoutMs: 1500 })
await w.start()
const first = w.pid!
process.stdout.write(`armed ${first}\n`)
const fds: number[] = []
for (;;) { try { fds.push(openSync('/dev/null', 'r')) } catch { break } }
process.stdout.write(`took ${fds.length}\n`)
process.kill(first, 'SIGKILL')
await sleep(2500) // five feeds and checks, blind
process.stdout.write('freeing\n')
for (const fd of fds) closeSync(fd)
for (let i = 0; i < 100 && (w.running() === undefined || w.running() === first); i++) await sleep(50)
process.stdout.write(`after ${w.running() ?? 'none'}\n`)
await w.stop()
process.stdout.write('stopped\n')
