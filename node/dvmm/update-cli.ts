// `vgrid vm update VM ...`: a client of PATCH /v1/vms/:id (vm-update.ts, update-route.ts).
import { parse } from '../cli/args.ts'
import { ApiClient, CliError } from '../cli/client.ts'
import { parseCpu } from '../resources.ts'
import type { VmDetail } from './vms.ts'
import { escapeControls } from './control-chars.ts'
import { asFlags, bootFlagsProblem, commandOf, splitAtDashes } from './command-flags.ts'

export const UPDATE_USAGE = 'vgrid vm update VM [--cpu N] [--memory SIZE] [--attach VOLUME]... [--detach VOLUME]... [--boot-volume VOLUME (the first: it boots from it)] [--constraint KEY=VALUE]... [--rm-constraint KEY]... [--anti-affinity GROUP | --no-anti-affinity] [--input NAME]... [--rm-input NAME]... [--output NAME]... [--rm-output NAME]... [--kernel PATH] [--initrd PATH | --no-initrd] [--cmdline TEXT | --no-cmdline] [--image PATH] [--command "CMD ARG..." | -- CMD ARG...] [--user USER | --no-user] (the size, volumes, constraints, group and boot only while nothing of it runs) [--restart always|on-failure|never (from its next exit)] [--label KEY=VALUE]... [--rm-label KEY]... [--json] [--api HOST:PORT]'

/** the flag each field of the answer's `changed` is given by */
const FLAGS: Record<string, string> = { antiAffinity: 'anti-affinity' }

/** KEY=VALUE flags as a map */
export function pairs (list: unknown, flag: string): Record<string, string> {
  const o: Record<string, string> = {}
  for (const p of (list as string[] | undefined) ?? []) {
    const i = p.indexOf('=')
    if (i <= 0) throw new CliError(`${flag} "${p}" is not KEY=VALUE`, 2)
    o[p.slice(0, i)] = p.slice(i + 1)
  }
  return o
}

/** labels or constraints to set (a string) and remove (null); a key set and removed at once: which was meant is not known */
function edits (set: unknown, rm: unknown, flag: string): Record<string, string | null> | undefined {
  const sets = pairs(set, `--${flag}`)
  const rms = (rm as string[] | undefined) ?? []
  const both = rms.find(k => k in sets)
  if (both != null) throw new CliError(`--${flag} ${both}=... and --rm-${flag} ${both}: give one of them`, 2)
  if (Object.keys(sets).length === 0 && rms.length === 0) return undefined
  return { ...sets, ...Object.fromEntries(rms.map(k => [k, null])) }
}

/**
 * A VM's whole new list of input or output terminals from the one it has (pure): removed
 * ones out, added ones last; names compared as host names (case does not count).
 */
export function terminalList (name: string, has: readonly string[], add: readonly string[], rm: readonly string[], flag: 'input' | 'output'): string[] {
  const is = (a: string) => (b: string): boolean => a.toLowerCase() === b.toLowerCase()
  const both = add.find(a => rm.some(is(a)))
  if (both != null) throw new CliError(`--${flag} ${both} and --rm-${flag} ${both}: give one of them`, 2)
  const missing = rm.find(r => !has.some(is(r)))
  // a value that names nothing of the VM is a bad value (exit 2), as a flag's always is
  if (missing != null) throw new CliError(`--rm-${flag} ${missing}: VM ${name} has no ${flag} terminal ${missing}${has.length > 0 ? ` (its ${flag}s: ${has.join(', ')})` : ` (it has no ${flag}s)`}`, 2)
  const kept = has.filter(x => !rm.some(is(x)))
  return [...kept, ...add.filter(a => !kept.some(is(a)))]
}

type Disk = VmDetail['disks'][number]
const names = (x: Disk, ref: string): boolean => x.id === ref || x.path === ref || x.path === `/${ref}`

/**
 * The VM's whole new list of volumes from the one it has (pure): detached ones out,
 * attached ones last (one it has already stays where it is), the boot volume, if given,
 * first. Ids where it has them, else as given.
 */
export function volumeList (name: string, has: readonly Disk[], attach: readonly string[], detach: readonly string[], boot?: string): string[] {
  const both = attach.find(a => detach.includes(a))
  if (both != null) throw new CliError(`--attach ${both} and --detach ${both}: give one of them`, 2)
  const missing = detach.find(ref => !has.some(x => names(x, ref)))
  if (missing != null) throw new CliError(`--detach ${missing}: VM ${name} has no volume ${missing}${has.length > 0 ? ` (it has ${has.map(x => x.path ?? x.id).join(', ')})` : ' (it has none)'}`, 2)
  if (boot != null && detach.some(ref => has.some(x => names(x, ref) && names(x, boot)))) throw new CliError(`--boot-volume ${boot} and --detach ${boot}: give one of them`, 2)
  const kept = has.filter(x => !detach.some(ref => names(x, ref)))
  const list = [...kept.map(x => x.id), ...attach.filter(a => !kept.some(x => names(x, a)))]
  if (boot == null) return list
  const own = kept.find(x => names(x, boot))?.id ?? boot
  return [own, ...list.filter(x => x !== own && x !== boot)]
}

export async function update (args: string[], print: { say: (s: string) => void, json: (v: unknown) => void, stateLines: (d: VmDetail) => void }): Promise<void> {
  // everything after `--` is the new command, taken as given
  const { argv, after } = splitAtDashes(args)
  const { values: v, positionals } = parse(argv, {
    api: { type: 'string' },
    json: { type: 'boolean' },
    cpu: { type: 'string' },
    memory: { type: 'string' },
    restart: { type: 'string' },
    label: { type: 'string', multiple: true },
    'rm-label': { type: 'string', multiple: true },
    constraint: { type: 'string', multiple: true },
    'rm-constraint': { type: 'string', multiple: true },
    'anti-affinity': { type: 'string' },
    'no-anti-affinity': { type: 'boolean' },
    input: { type: 'string', multiple: true },
    'rm-input': { type: 'string', multiple: true },
    output: { type: 'string', multiple: true },
    'rm-output': { type: 'string', multiple: true },
    attach: { type: 'string', multiple: true },
    detach: { type: 'string', multiple: true },
    'boot-volume': { type: 'string' },
    kernel: { type: 'string' },
    initrd: { type: 'string' },
    'no-initrd': { type: 'boolean' },
    cmdline: { type: 'string' },
    'no-cmdline': { type: 'boolean' },
    image: { type: 'string' },
    command: { type: 'string', multiple: true },
    user: { type: 'string' },
    'no-user': { type: 'boolean' }
  }, UPDATE_USAGE, 1)
  if (positionals[0] == null) throw new CliError(`give a VM\nusage: ${UPDATE_USAGE}`, 2)
  const body: Record<string, unknown> = {}
  if (v.cpu != null) {
    try { body.cpu = parseCpu(String(v.cpu), '--cpu') } catch (err) { throw new CliError((err as Error).message, 2) }
  }
  if (v.memory != null) body.memory = v.memory
  if (v.restart != null) body.restart = v.restart
  if (v['anti-affinity'] != null && v['no-anti-affinity'] === true) throw new CliError('--anti-affinity puts it in a group and --no-anti-affinity takes it out of its group: give one of them', 2)
  if (v['anti-affinity'] != null) body.antiAffinity = v['anti-affinity']
  if (v['no-anti-affinity'] === true) body.antiAffinity = null
  // what it boots or runs: a string sets it, --no-X removes it (null)
  for (const [k, none, means] of [['initrd', 'no-initrd', 'boots without one'], ['cmdline', 'no-cmdline', 'boots with none'], ['user', 'no-user', 'runs as root']] as const) {
    if (v[k] != null && v[none] === true) throw new CliError(`--${k} sets it and --${none} ${means}: give one of them`, 2)
    if (v[none] === true) body[k] = null
  }
  for (const k of ['kernel', 'initrd', 'cmdline', 'image', 'user'] as const) if (v[k] != null) body[k] = v[k]
  const command = commandOf(v.command as string[] | undefined, after, `vgrid vm update ${positionals[0] ?? 'VM'}`, UPDATE_USAGE)
  // create's rule, but an --initrd or --cmdline alone is for the kernel the VM has
  const alsoBoots = (['kernel', 'image'] as const).find(k => v[k] != null)
  if (v['boot-volume'] != null && alsoBoots != null) throw new CliError(`--boot-volume and --${alsoBoots}: a VM boots from a volume, a kernel or an image, one of them: give one`, 2)
  const bootFlags = bootFlagsProblem({ kernel: v.kernel != null, initrd: false, cmdline: false, image: v.image != null, command: command != null })
  if (bootFlags != null) throw new CliError(bootFlags, 2)
  if (command != null) body.command = command
  const labels = edits(v.label, v['rm-label'], 'label')
  if (labels != null) body.labels = labels
  const constraints = edits(v.constraint, v['rm-constraint'], 'constraint')
  if (constraints != null) body.constraints = constraints
  const attach = (v.attach as string[] | undefined) ?? []
  const detach = (v.detach as string[] | undefined) ?? []
  const boot = v['boot-volume'] as string | undefined
  const list = (k: 'input' | 'rm-input' | 'output' | 'rm-output'): string[] => v[k] ?? []
  const terminals = (['input', 'output'] as const).filter(k => list(k).length > 0 || list(`rm-${k}`).length > 0)
  const volumes = attach.length > 0 || detach.length > 0 || boot != null
  if (Object.keys(body).length === 0 && !volumes && terminals.length === 0) throw new CliError(`say what to change\nusage: ${UPDATE_USAGE}`, 2)
  const api = new ApiClient(v.api as string | undefined)
  const at = `/v1/vms/${encodeURIComponent(positionals[0])}`
  // lists are sent whole, made from the ones it has
  const cur = volumes || terminals.length > 0 ? await api.get<VmDetail>(at) : undefined
  for (const k of terminals) {
    if (cur == null) break
    const has = cur.spec[`${k}s`] ?? []
    body[`${k}s`] = terminalList(cur.name, has, list(k), list(`rm-${k}`), k)
    // what the list was made from: one changed meanwhile is a 409, not undone
    body[`${k}sWere`] = has
  }
  // a terminal is an input or an output: said in the flags' words
  const inputs = (body.inputs ?? cur?.spec.inputs ?? []) as string[]
  const outputs = (body.outputs ?? cur?.spec.outputs ?? []) as string[]
  const both = inputs.find(t => outputs.some(o => o.toLowerCase() === t.toLowerCase()))
  if (both != null && cur != null) {
    const isOutput = (cur.spec.outputs ?? []).some(o => o.toLowerCase() === both.toLowerCase())
    throw new CliError(isOutput ? `--input ${both}: VM ${cur.name} has output ${both} (a terminal is an input or an output): --rm-output ${both} with it` : `--output ${both}: VM ${cur.name} has input ${both} (a terminal is an input or an output): --rm-input ${both} with it`, 2)
  }
  if (volumes && cur != null) {
    body.volumes = volumeList(cur.name, cur.disks, attach, detach, boot)
    // what the list was made from: one changed through another node meanwhile is a 409, not undone
    body.volumesWere = cur.disks.map(x => x.id)
    if (boot != null) body.bootVolume = boot
  }
  const d = await api.request<VmDetail & { changed: string[] }>('PATCH', at, body).catch((err: unknown) => {
    const named = (e: unknown, field: 'volumes' | 'inputs' | 'outputs', flag: string): unknown => asFlags(e, body[field] as string[] | undefined, flag, field)
    throw named(named(named(err, 'volumes', '--attach'), 'inputs', '--input'), 'outputs', '--output')
  })
  if (v.json === true) return print.json(d)
  print.say(d.changed.length === 0 ? `${d.name}: unchanged (it is already so)` : `${d.name}: updated ${d.changed.map(f => FLAGS[f] ?? f).join(', ')}`)
  print.stateLines(d)
  // the reason is its last run's, which the update does not undo (bb53: read as the update's outcome)
  if (d.changed.length > 0 && d.state === 'failed') print.say(`  (that is its last run's, from before this update: vgrid vm start ${d.name} runs it with the change)`)
  // a VM no node can take now, said now rather than when it stays pending (bb52: a typo in a constraint's key)
  const nodes = d.placement?.nodes ?? []
  const example = nodes.find(n => n.filtered != null)
  if (d.changed.length > 0 && (d.state === 'stopped' || d.state === 'failed' || d.state === 'pending') && nodes.length > 0 && nodes.every(n => n.filtered != null) && example?.filtered != null) {
    process.stderr.write(escapeControls(`vgrid: warning: no node could take ${d.name} now (e.g. ${example.name}: ${example.filtered.reason}); it would stay pending when started`) + '\n')
  }
}
