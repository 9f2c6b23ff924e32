// `vgrid image build`: builds (or finds in the cache) the guest appliance the qemu
// driver boots, from the kernel, modules and busybox-static installed on this server.
// It runs locally, without an agent: the image lands in the data dir's cache.
import { parse } from '../../cli/args.ts'
import { CliError } from '../../cli/client.ts'
import { DEFAULT_DATA_DIR } from '../../config.ts'
import { buildGuestImage, ImageError } from './build.ts'

const USAGE = 'vgrid image build [--data-dir DIR] [--kernel-version VERSION] [--force] [--json]'

/** the flags that take a value (the word after them is no subcommand) */
const VALUED = new Set(['--data-dir', '--kernel-version'])

export async function run (argv: string[]): Promise<void> {
  // the subcommand is the first word that is no flag: `vgrid --json image build` hands
  // this `build --json`, `vgrid image --json build` gives `--json build` (bb46: "unknown subcommand")
  let at = 0
  while (at < argv.length && argv[at]!.startsWith('-')) at += VALUED.has(argv[at]!) ? 2 : 1
  const sub = argv[at]
  const rest = sub == null ? argv : [...argv.slice(0, at), ...argv.slice(at + 1)]
  if (sub === 'help' || argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(`usage: ${USAGE}\n`)
    return
  }
  // as `vgrid vm` without one (bb46: exit 0)
  if (sub == null) throw new CliError(`vgrid image: which subcommand?\nusage: ${USAGE}`, 2)
  if (sub !== 'build') throw new CliError(`unknown subcommand "image ${sub}"\nusage: ${USAGE}`, 2)
  const { values: v } = parse(rest, { json: { type: 'boolean' }, 'data-dir': { type: 'string' }, 'kernel-version': { type: 'string' }, force: { type: 'boolean' } }, USAGE)
  const t0 = performance.now()
  let img
  try {
    img = buildGuestImage((v['data-dir'] as string | undefined) ?? DEFAULT_DATA_DIR, { kernelVersion: v['kernel-version'] as string | undefined, force: v.force === true })
  } catch (err) {
    if (err instanceof ImageError) throw new CliError(`image build failed: ${err.message}`, 1)
    throw err
  }
  const ms = performance.now() - t0
  if (v.json === true) {
    process.stdout.write(JSON.stringify({ ...img, ms: Math.round(ms) }, null, 2) + '\n')
    return
  }
  process.stdout.write([
    `guest image ${img.hash} ${img.cached ? '(cached)' : `(built in ${(ms / 1000).toFixed(1)} s)`}`,
    `kernel    ${img.kernel} (${img.kernelVersion}, uncompressed from ${img.compression} for PVH boot)`,
    `initrd    ${img.initrd}`,
    `modules   ${img.modules.join(' ')}`,
    `cmdline   ${img.cmdline}   (vgrid adds the guest's address, gateway, name and disk count: vgrid.ip, vgrid.gw, vgrid.name, vgrid.disks; with the overlay vgrid.overlay, vgrid.hosts)`,
    `ready     the console prints "${img.readyMark} ..." when its HTTP service runs`
  ].join('\n') + '\n')
}
