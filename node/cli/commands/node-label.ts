// `vgrid node label NODE key=value...` and `vgrid node unlabel NODE key...`: an
// operator's labels on a node, stored in the cluster document (every agent sees
// them, they survive restarts). NODE is a node's name or peer id.
import { parse, API_OPTION, JSON_OPTION } from '../args.ts'
import { ApiClient, CliError } from '../client.ts'
import { NODE_USAGE } from '../../dvmm/cli.ts'
import { sayLabels } from '../format.ts'

const LABEL_USAGE = 'vgrid node label NODE KEY=VALUE... [--json] [--api HOST:PORT]'
const UNLABEL_USAGE = 'vgrid node unlabel NODE KEY... [--json] [--api HOST:PORT]'
// with the VM manager's node subcommands (node/dvmm/cli.ts), so that `vgrid node --help` names them all
const USAGE = `usage: ${LABEL_USAGE}\n       ${UNLABEL_USAGE}\n       ${NODE_USAGE}`

/** the answer of PATCH /v1/nodes/:id/labels (node/api/types.ts LabelsChangedView) */
interface LabelsAnswer { node: string, name: string, set: Record<string, string>, removed: string[], labels: Record<string, string> }

// every label of one command in one request: all applied in one change, or none (bb46:
// one request a key applied those before a bad or missing one, then failed)
const path = (node: string): string => `/v1/nodes/${encodeURIComponent(node)}/labels`

const show = (labels: Record<string, string>): string => sayLabels(labels) || '(none)'

export async function run (argv: string[]): Promise<void> {
  const [sub, ...rest] = argv
  if (sub === 'label') return await label(rest)
  if (sub === 'unlabel') return await unlabel(rest)
  // as `vgrid vm` without one (bb46: `vgrid node` exited 0)
  if (sub == null) throw new CliError(`vgrid node: which subcommand?\n${USAGE}`, 2)
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    process.stdout.write(USAGE + '\n')
    return
  }
  throw new CliError(`unknown subcommand "node ${sub}"\n${USAGE}`, 2)
}

async function label (argv: string[]): Promise<void> {
  const { values: v, positionals } = parse(argv, { ...API_OPTION, ...JSON_OPTION }, LABEL_USAGE, Infinity)
  const [node, ...pairs] = positionals
  if (node == null || pairs.length === 0) throw new CliError(`give a node and at least one KEY=VALUE\nusage: ${LABEL_USAGE}`, 2)
  const parsed = pairs.map(p => {
    const i = p.indexOf('=')
    if (i <= 0) throw new CliError(`"${p}" is not KEY=VALUE\nusage: ${LABEL_USAGE}`, 2)
    return { key: p.slice(0, i), value: p.slice(i + 1) }
  })
  // one value a key: which of two was meant is not for the CLI to guess (bb30: the last won)
  const twice = parsed.find((x, i) => parsed.findIndex(y => y.key === x.key) !== i)
  if (twice != null) throw new CliError(`label "${twice.key}" is given twice: give each key once\nusage: ${LABEL_USAGE}`, 2)
  const api = new ApiClient(v.api as string | undefined)
  say(await patch(api, node, { set: Object.fromEntries(parsed.map(p => [p.key, p.value])) }, () => one(api, 'PUT', node, parsed[0]!.key, { value: parsed[0]!.value })), v.json === true)
}

/**
 * The one request of a command; an agent of an earlier release (no PATCH route, rv45)
 * takes a single label by its own route, and several are refused rather than applied in
 * part (what PATCH is for)
 */
async function patch (api: ApiClient, node: string, body: { set?: Record<string, string>, remove?: string[] }, single: (() => Promise<LabelsAnswer>) | null): Promise<LabelsAnswer> {
  try {
    return await api.request<LabelsAnswer>('PATCH', path(node), body)
  } catch (err) {
    if (!(err instanceof CliError && err.code === 'not_found' && /no route PATCH/.test(err.detail))) throw err
    const n = Object.keys(body.set ?? {}).length + (body.remove?.length ?? 0)
    if (n === 1 && single != null) return await single()
    throw new CliError(`the agent is of an earlier release, which takes one label per command (it has no PATCH ${path(node)}): upgrade it, or give one label at a time`, 1, { code: 'agent_too_old' })
  }
}

/** one label by its own route (an agent of an earlier release), as PATCH would answer */
async function one (api: ApiClient, method: 'PUT' | 'DELETE', node: string, key: string, body?: { value: string }): Promise<LabelsAnswer> {
  const r = await api.request<{ node: string, name: string, labels: Record<string, string> }>(method, `${path(node)}/${encodeURIComponent(key)}`, body)
  return { node: r.node, name: r.name, set: body != null ? { [key]: body.value } : {}, removed: body == null ? [key] : [], labels: r.labels }
}

function say (answer: LabelsAnswer, json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify(answer, null, 2) + '\n')
    return
  }
  process.stdout.write(`${answer.name}: ${show(answer.labels)}\n`)
}

async function unlabel (argv: string[]): Promise<void> {
  const { values: v, positionals } = parse(argv, { ...API_OPTION, ...JSON_OPTION }, UNLABEL_USAGE, Infinity)
  const [node, ...keys] = positionals
  if (node == null || keys.length === 0) throw new CliError(`give a node and at least one KEY\nusage: ${UNLABEL_USAGE}`, 2)
  // KEY=VALUE given as to `label` (bb46: the key's characters were blamed)
  const pair = keys.find(k => k.indexOf('=') > 0)
  if (pair != null) throw new CliError(`unlabel takes label keys, not KEY=VALUE: "${pair.slice(0, pair.indexOf('='))}"?\nusage: ${UNLABEL_USAGE}`, 2)
  const twice = keys.find((k, i) => keys.indexOf(k) !== i)
  if (twice != null) throw new CliError(`label "${twice}" is given twice: give each key once\nusage: ${UNLABEL_USAGE}`, 2)
  const api = new ApiClient(v.api as string | undefined)
  say(await patch(api, node, { remove: keys }, () => one(api, 'DELETE', node, keys[0]!)), v.json === true)
}
