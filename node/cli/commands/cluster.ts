// `vgrid init` (new cluster key + token) and `vgrid token` (the running grid's token).
import { mkdir, access } from 'node:fs/promises'
import { join } from 'node:path'
import { parse, API_OPTION, JSON_OPTION } from '../args.ts'
import { ApiClient, CliError } from '../client.ts'
import { encodeToken, generateClusterKey } from '../../../protocol/cluster-key.ts'
import { CLUSTER_KEY_FILE, writeClusterKey } from '../../cluster-key-store.ts'
import { DEFAULT_DATA_DIR } from '../../config.ts'
import { dataDirPlaceProblem, refuseSharedDir } from '../../data-dir.ts'

export async function init (argv: string[]): Promise<void> {
  const usage = 'vgrid init [--data-dir DIR] [--force] [--json]'
  const { values: v } = parse(argv, { 'data-dir': { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' } }, usage)
  const dir = (v['data-dir'] as string | undefined) ?? DEFAULT_DATA_DIR
  // first: on /proc the mkdir below loops for ever, and on a file it said only EEXIST
  const place = dataDirPlaceProblem(dir)
  if (place != null) throw new CliError(place, 2)
  const path = join(dir, CLUSTER_KEY_FILE)
  const exists = await access(path).then(() => true, () => false)
  if (exists && v.force !== true) throw new CliError(`${path} already exists; this data dir belongs to a grid (use --force to replace its key)`)
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
  } catch (err) {
    throw new CliError(`data dir ${dir} cannot be created: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  // not into a directory others use (its key there made the agent take the directory for its own)
  try { refuseSharedDir(dir) } catch (err) { throw new CliError((err as Error).message, 1) }
  const key = generateClusterKey()
  await writeClusterKey(path, key)
  process.stderr.write(`wrote a new cluster key to ${path} (cluster ${key.clusterId})\n`)
  const token = encodeToken(key, [])
  process.stdout.write(v.json === true ? JSON.stringify({ token, cluster: key.clusterId, keyFile: path }, null, 2) + '\n' : token + '\n')
}

export async function token (argv: string[]): Promise<void> {
  const { values: v } = parse(argv, { ...API_OPTION, ...JSON_OPTION }, 'vgrid token [--json] [--api HOST:PORT]')
  const res = await new ApiClient(v.api as string | undefined).get<{ token: string }>('/v1/token')
  process.stdout.write(v.json === true ? JSON.stringify({ token: res.token }, null, 2) + '\n' : res.token + '\n')
}
