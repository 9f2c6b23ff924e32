// A vgrid NBD server of one local volume in a process of its own, with the code of
// any checkout (bench/gvs-local-read.ts compares this one with an older one):
//   node bench/gvs-local-server.ts ROOT STORE_DIR SOCKET SIZE_BYTES
// loads node/gvs/{object-store,block-device,nbd/server}.ts from ROOT, serves the volume
// "local" on SOCKET, prints "ready", and exits when stdin closes.
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const [root, dir, socketPath, size] = process.argv.slice(2)
if (root == null || dir == null || socketPath == null || size == null) {
  console.error('usage: gvs-local-server.ts ROOT STORE_DIR SOCKET SIZE_BYTES')
  process.exit(2)
}
const load = async (p: string): Promise<any> => await import(pathToFileURL(join(root, p)).href) // eslint-disable-line @typescript-eslint/no-explicit-any
const { ObjectStore } = await load('node/gvs/object-store.ts')
const { LocalVolume } = await load('node/gvs/block-device.ts')
const { NbdServer } = await load('node/gvs/nbd/server.ts')
const { silentLogger } = await load('node/log.ts')
// as an agent's process runs (its host sets this; this server makes no host)
// (an older checkout measured against may not have it yet)
await load('protocol/gc-tuning.ts').then(m => { m.tuneGcForStreams() }, () => {})

const store = new ObjectStore({ log: silentLogger }, { dir })
await store.start()
const dev = new LocalVolume({ store }, { volume: 'local', size: Number(size), epoch: 1 })
const server = new NbdServer({ log: silentLogger, exports: { get: (n: string) => n === 'local' ? dev : undefined, list: () => ['local'] } }, { socketPath })
await server.start()
console.log('ready')
process.stdin.resume()
process.stdin.on('end', () => {
  void (async () => {
    await server.stop()
    await store.stop()
    process.exit(0)
  })()
})
