// A stand-in agent for the watchdog tests: starts (or adopts) the watchdog, feeds it
// from its event loop, prints "armed PID", and disarms on SIGTERM.
import { silentLogger } from '../../../node/log.ts'
import { Watchdog } from '../../../node/dvmm/watchdog/index.ts'

const [dataDir, timeoutMs] = process.argv.slice(2)
const w = new Watchdog({ log: silentLogger }, { dataDir: dataDir!, timeoutMs: Number(timeoutMs) })
await w.start()
process.stdout.write(`armed ${w.pid}\n`)
process.on('SIGTERM', () => { void w.stop().then(() => process.exit(0)) })
