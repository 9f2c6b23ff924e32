// CLI commands of DVMM, clients of the local agent's API:
//   vgrid vm create|ls|show|update|start|stop|rm|wait|console
//   vgrid node drain|undrain|forget NODE
//   vgrid ha
import { parse, API_OPTION, JSON_OPTION } from '../cli/args.ts'
import { ApiClient, CliError } from '../cli/client.ts'
import { strandedWhy, type HaReport } from '../../crdt/placement/index.ts'
import type { VmDetail, VmRow } from './vms.ts'
import type { NodeView } from '../api/types.ts'
import { awayForGood, volumeDrainLine, volumeDrainProgress, type VolumeDrainProgress, type VolumesAnswer } from './drain-volumes.ts'
import { escapeControls } from './control-chars.ts'
import { parseCpu } from '../resources.ts'
import { num, sayLabels } from '../cli/format.ts'
import { linkLine } from '../lcm/cli.ts'
import { follow, type ConsoleAnswer } from './console-follow.ts'
import type { LinkView } from '../lcm/links.ts'
import { waitForVm, waitTimeoutMs, WAIT_FORS, type WaitFor } from './vm-wait.ts'
import { VM_STATES, vmFilterQuery } from './vm-filter.ts'
import { pairs, update, UPDATE_USAGE } from './update-cli.ts'
import { bootDigest, bootLine } from './boot-fields.ts'
import { asFlags, bootFlagsProblem, commandOf, splitAtDashes } from './command-flags.ts'

const CREATE_USAGE = 'vgrid vm create NAME --cpu N --memory SIZE [--driver process|qemu (default: process with a command, else qemu)] (--command "CMD ARG..." | -- CMD ARG... [--user USER] | --kernel PATH [--initrd PATH] [--cmdline TEXT] | --image PATH | --volume PATH: boots from it) [--volume PATH]... [--restart always|on-failure|never (default always)] [--constraint KEY=VALUE (node labels it needs)]... [--label KEY=VALUE (its own)]... [--anti-affinity GROUP] [--input TERMINAL]... [--output TERMINAL]... [--app APP (the application it belongs to)] [--stopped (made, not started)] [--wait [--timeout DURATION] (until it runs)] [--json] [--api HOST:PORT]'
const LS_USAGE = 'vgrid vm ls [--state STATE] [--node NODE] [--app APP] [--label KEY=VALUE]... [--json] [--api HOST:PORT]'
const WAIT_USAGE = 'vgrid vm wait VM [--for running|stopped|gone (default running)] [--timeout DURATION (default 5m; 90s, 10m, or seconds)] [--json] [--api HOST:PORT]'
const VM_USAGE = `usage: ${CREATE_USAGE}
       ${LS_USAGE}
       vgrid vm show VM [--json]
       ${UPDATE_USAGE}
       vgrid vm start|stop|rm VM [--wait [--timeout DURATION]] [--json]
       ${WAIT_USAGE}
       vgrid vm console VM [--follow|-f] [--json]
SIZE is bytes or a number with K, M, G, T or P (KB/KiB, MB/MiB... alike: units of 1024)`
export const NODE_USAGE = 'vgrid node drain NODE [--force] [--wait [--timeout DURATION (default 5m; 90s, 10m, or seconds)]] [--json] [--api HOST:PORT]\n       vgrid node forget NODE [--force (also when writes only it may hold are given up)] [--without-majority (from a node that sees no majority: only when the members out of sight are gone for good)] [--json] [--api HOST:PORT]\n       vgrid node undrain NODE [--json] [--api HOST:PORT]'

const out = (s: string): void => { process.stdout.write(s + '\n') }
/**
 * One line with text of the document in it (a reason, a node's or a volume's name): its
 * control characters escaped (control-chars.ts), so none reaches the terminal as such
 * and the line stays one line. Lines meant to hold a newline use `out`.
 */
const say = (s: string): void => { out(escapeControls(s)) }
/** JSON escapes C0 in strings, not DEL and C1 (U+009B is a CSI to some terminals): those too, the value the same */
const json = (v: unknown): void => { out(JSON.stringify(v, null, 2).replace(/[\u007f-\u009f]/g, c => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)) }
/** memory as --memory takes it: under 1 GiB in MiB (bb41 read 64.5M as 0.06G), else in GiB */
const gib = (b: number): string => b < 2 ** 30 ? `${num(b / 2 ** 20)}M` : `${num(b / 2 ** 30)}G`
const enc = encodeURIComponent

function table (rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map(r => r[i]!.length)))
  return rows.map(r => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd()).join('\n')
}

export async function vm (argv: string[]): Promise<void> {
  const [sub, ...rest] = argv
  switch (sub) {
    case 'create': return await create(rest)
    case 'ls': case 'list': return await ls(rest)
    case 'show': return await show(rest)
    case 'start': case 'stop': case 'rm': return await act(sub, rest)
    case 'console': return await consoleOf(rest)
    case 'wait': return await waitCommand(rest)
    case 'update': return await update(rest, { say, json, stateLines })
    // no subcommand is a usage error (exit 2, as for an unknown one); asking for help is not
    case undefined: throw new CliError(`vgrid vm: which subcommand?\n${VM_USAGE}`, 2)
    case 'help': case '--help': case '-h': out(VM_USAGE); return
    default: throw new CliError(`unknown subcommand "vm ${sub}"\n${VM_USAGE}`, 2)
  }
}

async function create (args: string[]): Promise<void> {
  // everything after `--` is the command, taken as given (it may hold flags of its own)
  const { argv, after } = splitAtDashes(args)
  const { values: v, positionals } = parse(argv, {
    api: { type: 'string' },
    json: { type: 'boolean' },
    cpu: { type: 'string' },
    memory: { type: 'string' },
    driver: { type: 'string' },
    command: { type: 'string', multiple: true },
    user: { type: 'string' },
    kernel: { type: 'string' },
    initrd: { type: 'string' },
    cmdline: { type: 'string' },
    image: { type: 'string' },
    volume: { type: 'string', multiple: true },
    input: { type: 'string', multiple: true },
    output: { type: 'string', multiple: true },
    restart: { type: 'string' },
    constraint: { type: 'string', multiple: true },
    label: { type: 'string', multiple: true },
    'anti-affinity': { type: 'string' },
    app: { type: 'string' },
    stopped: { type: 'boolean' },
    ...WAIT_OPTIONS
  }, CREATE_USAGE, 1)
  const timeoutMs = waitFlags(v)
  if (v.wait === true && v.stopped === true) throw new CliError('--wait waits until the VM runs, and --stopped makes it without starting it: give one of them', 2)
  const name = positionals[0]
  if (name == null) throw new CliError(`give the VM a name\nusage: ${CREATE_USAGE}`, 2)
  if (v.cpu == null || v.memory == null) throw new CliError(`--cpu and --memory are required\nusage: ${CREATE_USAGE}`, 2)
  // decimal only: Number() also takes 0x1 and 1e0 (a tester's --cpu 0x1 made 1 vCPU); spaces around as --memory takes them
  let cpu: number
  try { cpu = parseCpu(String(v.cpu), '--cpu') } catch (err) { throw new CliError((err as Error).message, 2) }
  // nothing to run given: which of the two kinds of VM was meant is not known
  // (volumes alone: a qemu VM that boots from the first)
  if (v.driver == null && v.command == null && after == null && v.kernel == null && v.image == null && (v.volume == null || v.volume.length === 0)) {
    throw new CliError(`say what the VM runs: a command (-- CMD ARG..., a process VM), or --kernel, --image, or a --volume to boot from (a qemu VM)\nusage: ${CREATE_USAGE}`, 2)
  }
  const body: Record<string, unknown> = {
    name,
    cpu,
    memory: v.memory,
    driver: v.driver ?? (v.command != null || after != null ? 'process' : 'qemu'),
    constraints: pairs(v.constraint, '--constraint'),
    labels: pairs(v.label, '--label')
  }
  const command = commandOf(v.command as string[] | undefined, after, 'vgrid vm create NAME ...', CREATE_USAGE)
  const boot = bootFlagsProblem({ kernel: v.kernel != null, initrd: v.initrd != null, cmdline: v.cmdline != null, image: v.image != null, command: command != null })
  if (boot != null) throw new CliError(`${boot}\nusage: ${CREATE_USAGE}`, 2)
  if (command != null) body.command = command
  for (const k of ['kernel', 'initrd', 'cmdline', 'image', 'restart', 'app', 'user'] as const) if (v[k] != null) body[k] = v[k]
  if (v['anti-affinity'] != null) body.antiAffinity = v['anti-affinity']
  if (v.volume != null) body.volumes = v.volume
  if (v.input != null) body.inputs = v.input
  if (v.output != null) body.outputs = v.output
  if (v.stopped === true) body.desired = 'stopped'
  const api = new ApiClient(v.api as string | undefined)
  const d = await api.request<VmDetail>('POST', '/v1/vms', body).catch((err: unknown) => { throw asFlags(err, v.volume as string[] | undefined) })
  if (timeoutMs != null) return await waitAndSay(api, d.name, 'running', timeoutMs, v.json === true, { asked: true })
  if (v.json === true) return json(d)
  stateLines(d)
}

const WAIT_OPTIONS = { wait: { type: 'boolean' }, timeout: { type: 'string' } } as const

/** `--wait [--timeout D]`: how long to wait, or undefined when not asked to */
function waitFlags (v: { wait?: unknown, timeout?: unknown }): number | undefined {
  if (v.timeout != null && v.wait !== true) throw new CliError('--timeout is how long --wait waits: give --wait too', 2)
  return v.wait === true ? waitTimeoutMs(v.timeout as string | undefined) : undefined
}

/**
 * Waits (progress lines on stderr), then says where it stands: its detail, or that it is
 * gone. `asked`: after the caller's own request; `removed`: the caller's rm's answer, kept
 * in --json's.
 */
async function waitAndSay (api: ApiClient, name: string, want: WaitFor, timeoutMs: number, asJson: boolean, o: { asked?: boolean, removed?: unknown } = {}): Promise<void> {
  const removed = o.removed
  const { detail: d, note } = await waitForVm(api, name, want, { timeoutMs, asked: o.asked, afterRm: removed != null, progress: asJson ? undefined : line => { process.stderr.write(`${line}\n`) } })
  if (asJson) return json(d ?? { name, state: 'gone', ...(note != null ? { note } : {}), ...(removed != null ? { removed } : {}) })
  if (d == null) return say(`${name}: gone${note != null ? ` (${note})` : ''}`)
  stateLines(d)
}

async function waitCommand (argv: string[]): Promise<void> {
  const { values: v, positionals } = parse(argv, { api: { type: 'string' }, json: { type: 'boolean' }, for: { type: 'string' }, timeout: { type: 'string' } }, WAIT_USAGE, 1)
  if (positionals[0] == null) throw new CliError(`give a VM\nusage: ${WAIT_USAGE}`, 2)
  const want = (v.for ?? 'running') as WaitFor
  if (!WAIT_FORS.includes(want)) throw new CliError(`--for "${String(v.for)}" is none of ${WAIT_FORS.join(', ')}\nusage: ${WAIT_USAGE}`, 2)
  await waitAndSay(new ApiClient(v.api as string | undefined), positionals[0], want, waitTimeoutMs(v.timeout as string | undefined), v.json === true)
}

/** `NAME: STATE (REASON)`, a reason's lines (a guest's output, written with \n escaped) on lines of their own (bb46: "lock\nIs another process") */
function stateLines (d: { name: string, state: string, reason?: string | null }): void {
  const [first, ...more] = d.reason?.split(/(?:\\r)?\\n/).filter((l, i) => i === 0 || l.trim() !== '') ?? []
  say(`${d.name}: ${d.state}${first != null ? ` (${first}${more.length === 0 ? ')' : ''}` : ''}`)
  more.forEach((l, i) => { say(`    ${l.trim()}${i === more.length - 1 ? ')' : ''}`) })
}

async function ls (argv: string[]): Promise<void> {
  // the states, said (bb49: `unknown` and `paused` were in no help)
  const { values: v } = parse(argv, { api: { type: 'string' }, json: { type: 'boolean' }, state: { type: 'string' }, node: { type: 'string' }, app: { type: 'string' }, label: { type: 'string', multiple: true } }, `${LS_USAGE}\n  STATE: pending (no place yet, why in REASON), starting, running, stopping, stopped (by request, or its command ended cleanly), failed (a failed start, the crash rule: 3 in 24 h, or a crash under --restart never), paused (its guest held after a disk error), unknown (its node is out of this node's sight)`)
  const labels = v.label == null ? undefined : pairs(v.label, '--label')
  // the API refuses it too: one value each (rv51: the last was kept without a word)
  const twice = (v.label ?? []).find(p => labels![p.slice(0, p.indexOf('='))] !== p.slice(p.indexOf('=') + 1))
  if (twice != null) throw new CliError(`--label ${twice.slice(0, twice.indexOf('='))} is given twice with different values: a VM has one value of it`, 2)
  const filter = { state: v.state as string | undefined, node: v.node as string | undefined, app: v.app as string | undefined, ...(labels != null ? { labels } : {}) }
  if (filter.state != null && !(VM_STATES as readonly string[]).includes(filter.state)) throw new CliError(`--state "${filter.state}" is none of ${VM_STATES.join(', ')}`, 2)
  const query = vmFilterQuery(filter)
  const r = await new ApiClient(v.api as string | undefined).get<{ vms: VmRow[] }>(`/v1/vms${query}`).catch((err: unknown) => {
    // an agent of an earlier release takes no filter
    throw err instanceof CliError && query !== '' && /unknown query parameter/.test(err.message) ? new CliError(`${err.detail}: this node's agent is of an earlier release, which lists VMs without --state, --node, --app or --label`, 1, { code: err.code }) : err
  })
  if (v.json === true) return json(r)
  if (r.vms.length === 0) return out(query === '' ? 'no VMs' : 'no VMs match')
  // an APP column where a VM belongs to one (bb46: only the JSON said it)
  const apps = r.vms.some(x => x.app != null)
  out(table([['NAME', ...apps ? ['APP'] : [], 'STATE', 'NODE', 'EPOCH', 'CPU', 'MEMORY', 'DRIVER', 'REASON'],
    // a newline in a reason broke the row (a guest's output as the reason of a start that ended at once)
    ...r.vms.map(x => [x.name, ...apps ? [x.app ?? '-'] : [], x.state, x.node ?? '-', x.epoch == null ? '-' : String(x.epoch), String(x.cpu), gib(x.memoryBytes), x.driver, reasonCell(x.name, x.reason)].map(escapeControls))]))
}

/**
 * A reason's first line, and where the rest is: a start that ended at once has the
 * guest's output in it, which printed escaped made one row of `\n`s and usage text
 * (bb27); `vm show` has all of it.
 */
export function reasonCell (vm: string, reason: string | null | undefined): string {
  if (reason == null) return ''
  // the agent writes reasons with their control characters escaped (`\n` as two characters)
  const lines = reason.split(/\r?\n|(?:\\r)?\\n/)
  const first = lines[0]!.trimEnd()
  return lines.slice(1).some(l => l.trim() !== '') ? `${first} ... (all of it: vgrid vm show ${vm})` : first
}

async function show (argv: string[]): Promise<void> {
  const usage = 'vgrid vm show VM [--json] [--api HOST:PORT]'
  const { values: v, positionals } = parse(argv, { ...API_OPTION, ...JSON_OPTION }, usage, 1)
  if (positionals[0] == null) throw new CliError(`give a VM\nusage: ${usage}`, 2)
  const api = new ApiClient(v.api as string | undefined)
  const d = await api.get<VmDetail>(`/v1/vms/${enc(positionals[0])}`)
  if (v.json === true) return json(d)
  // its links, by the VM's name as links name their ends (bb42: show listed none); an
  // agent that cannot list them leaves the line out rather than the whole answer (one
  // of an earlier release, without ?vm=, lists them all)
  const links = (await api.get<{ links: LinkView[] }>(`/v1/links?vm=${enc(d.name)}`).catch(async () => await api.get<{ links: LinkView[] }>('/v1/links')).catch(() => null))?.links.filter(l => l.from.vm === d.name || l.to.vm === d.name)
  stateLines(d)
  say(`  desired ${d.desired}; ${d.cpu} cpu, ${gib(d.memoryBytes)}; driver ${d.driver}; node ${d.node ?? '-'}; epoch ${d.epoch ?? '-'}${d.claims > 1 ? `; ${d.claims} concurrent claims` : ''}`)
  if (d.address != null) say(`  overlay address ${d.address}`)
  // a run placed before a `vm update` changed its size keeps the size it was placed with
  const l = d.lease
  if (l != null && d.node != null && (l.status === 'running' || l.status === 'stopping') && (l.cpu !== d.cpu || l.memoryBytes !== d.memoryBytes)) say(`  this run has ${l.cpu} cpu, ${gib(l.memoryBytes)}, as placed before its size was changed; ${d.cpu} cpu, ${gib(d.memoryBytes)} from its next start`)
  // likewise what it boots: an update of it that merged after the start
  if (l != null && d.node != null && (l.status === 'running' || l.status === 'stopping') && l.boot != null && l.boot !== bootDigest(d.spec)) say(`  this run boots what it was started with, before what it boots or runs was changed (vm update); the new one from its next start`)
  // what it was made with that placement and the operator read (bb46: only the JSON had them)
  const made = [
    ...(d.app != null ? [`app ${d.app}`] : []),
    ...(Object.keys(d.spec.labels ?? {}).length > 0 ? [`labels ${sayLabels(d.spec.labels!)}`] : []),
    ...(Object.keys(d.spec.constraints).length > 0 ? [`needs node labels ${sayLabels(d.spec.constraints)}`] : []),
    ...(d.spec.antiAffinity != null ? [`anti-affinity group ${d.spec.antiAffinity}`] : []),
    ...(d.spec.restart != null ? [`restart ${d.spec.restart}`] : [])
  ]
  if (made.length > 0) say(`  ${made.join('; ')}`)
  const disks = d.disks ?? d.spec.volumes.map(id => ({ id, path: id }))
  say(`  ${bootLine(d.spec, disks[0] == null ? undefined : disks[0].path ?? `${disks[0].id} (removed)`)}`)
  // no PID namespace of its own: a VM's PID 1 would ignore the stop's SIGTERM
  if (d.spec.user != null) say(`  runs as user ${d.spec.user}, without capabilities; other VMs and processes of ${d.spec.user} on its node can signal it (give each VM a user of its own)`)
  else if (d.spec.driver === 'process') say('  runs as root, with every capability and the node\'s files in reach (--user runs it as another user, confined)')
  // by path, as users name them (an agent of an earlier release sends ids only)
  if (disks.length > 0) say(`  volumes ${disks.map(x => x.path == null ? `${x.id} (removed)` : `${x.path}${x.state != null && x.state !== 'healthy' ? ` (${x.state})` : ''}`).join(', ')}`)
  const terms = (l: string[] | undefined): string => l == null || l.length === 0 ? '-' : l.join(', ')
  if ((d.spec.inputs?.length ?? 0) + (d.spec.outputs?.length ?? 0) > 0) say(`  terminals: inputs ${terms(d.spec.inputs)}; outputs ${terms(d.spec.outputs)}`)
  if (links != null && links.length > 0) {
    say('  links:')
    for (const l of links) say(`    ${linkLine(l)}`)
  }
  const rt = d.runtime
  // a run that ended keeps its record until the VM starts again: its pid and network are gone
  const running = rt != null && rt.state !== 'stopped' && rt.state !== 'failed'
  if (rt != null && running) say(`  on this node: pid ${rt.pid ?? '-'}${rt.startedAt != null ? ` since ${new Date(rt.startedAt).toISOString()}` : ''}${rt.network != null ? `; interface ${rt.network.hostIf} (${rt.network.hostAddress} <-> ${rt.network.vmAddress})` : ''}${Object.entries(rt.detail ?? {}).filter(([k]) => k === 'accel' || k === 'cgroup' || k === 'netns').map(([k, x]) => `; ${k} ${x}`).join('')}`)
  else if (rt != null) say(`  on this node: its last run ${rt.state}${rt.startedAt != null ? ` (started ${new Date(rt.startedAt).toISOString()})` : ''}; nothing of it runs`)
  const ranking = d.decision?.ranking ?? d.placement
  say(d.decision != null ? `placement (as decided at ${d.decision.at}):` : 'placement (if it were placed now):')
  for (const n of ranking.nodes) {
    say(n.filtered != null
      ? `  ${n.name}: filtered by ${n.filtered.check}: ${n.filtered.reason}`
      : `  ${n.name}: score ${n.total.toFixed(3)} (${scoreParts(n.scores)}${n.why != null ? `; ${n.why}` : ''})`)
  }
  if (d.history.length > 0) say('history:')
  for (const e of d.history) say(`  ${historyLine(e)}`)
  // an agent of an older release answers without it
  const unreadable = d.historyUnreadable ?? 0
  if (unreadable > 0) say(`  (${unreadable} ${unreadable === 1 ? 'event' : 'events'} of its log could not be read here and ${unreadable === 1 ? 'is' : 'are'} left out: written by a newer agent, or damaged)`)
}

/**
 * A node's score as the sum it is (crdt/placement/rank.ts): each part not zero with its
 * weight, fit always (bb46: "score -999.273 (fit 0.727, anti-affinity -1)" did not add up)
 */
export function scoreParts (s: { fit?: number, antiAffinity?: number, reach?: number, overlay?: number }): string {
  const parts = [['overlay', s.overlay, ' x 1e9'], ['reach', s.reach, ' x 1e6'], ['anti-affinity', s.antiAffinity, ' x 1000']] as const
  return [...parts.filter(([, x]) => x != null && x !== 0).map(([name, x, w]) => `${name} ${x!}${w}`), `fit ${(s.fit ?? 0).toFixed(3)}`].join(', ')
}

async function act (what: 'start' | 'stop' | 'rm', argv: string[]): Promise<void> {
  const until = what === 'start' ? 'until it runs' : what === 'stop' ? 'until nothing of it runs' : 'until its run has ended and its name is free'
  const usage = `vgrid vm ${what} VM [--wait [--timeout DURATION (default 5m)] (${until})] [--json] [--api HOST:PORT]`
  const { values: v, positionals } = parse(argv, { api: { type: 'string' }, json: { type: 'boolean' }, ...WAIT_OPTIONS }, usage, 1)
  if (positionals[0] == null) throw new CliError(`give a VM\nusage: ${usage}`, 2)
  const timeoutMs = waitFlags(v)
  const api = new ApiClient(v.api as string | undefined)
  const path = `/v1/vms/${enc(positionals[0])}`
  const r = what === 'rm' ? await api.request<unknown>('DELETE', path) : await api.request<VmDetail>('POST', `${path}/${what}`)
  if (what === 'rm') {
    const { links = [], stillRuns, stopping } = r as { links?: string[], stillRuns?: { name: string, why: string }, stopping?: { name: string, disks?: boolean } }
    // a process VM has neither a guest to shut down nor volumes (bb38); an older agent does not say whether it had disks
    const line = `${positionals[0]}: removed${links.length > 0 ? `, with its link${links.length === 1 ? '' : 's'} ${links.join(', ')}` : ''}${stillRuns != null ? `; it still runs on ${stillRuns.name}: ${stillRuns.why}` : ''}${stopping != null ? `; it is being stopped on ${stopping.name} (it gets its stop grace to end, then is killed)${stopping.disks !== false ? '; its volumes go to no other VM until it has (vgrid vol info shows)' : ''}` : ''}`
    // with --wait, said first, with the progress (rv51: the wait dropped it)
    if (timeoutMs != null) {
      if (v.json !== true) process.stderr.write(`${escapeControls(line)}\n`)
      return await waitAndSay(api, positionals[0], 'gone', timeoutMs, v.json === true, { asked: true, removed: r })
    }
    if (v.json === true) return json(r)
    say(line)
  } else if (timeoutMs != null) {
    return await waitAndSay(api, (r as VmDetail).id, what === 'start' ? 'running' : 'stopped', timeoutMs, v.json === true, { asked: true })
  } else if (v.json === true) {
    return json(r)
  } else {
    const d = r as VmDetail & { stillRuns?: { name: string, why: string } }
    const asked = what === 'start' ? 'running' : 'stopped'
    // why it is not there yet, where it says (bb54: a start during a restart pause read "now starting", the pause unsaid);
    // a restart pause the start ends (setDesiredIn's startAsked) is said so, not as the wait it was
    const first = d.stillRuns == null && d.state !== asked && d.state !== 'running' ? d.reason?.split(/(?:\\r)?\\n/)[0] : undefined
    const why = what === 'start' && first != null && /\brestarting in \d+(\.\d+)? s\b/.test(first) ? 'its restart pause ends now: it starts at once on its node' : first
    say(`${d.name}: desired ${d.desired}, now ${d.stillRuns != null ? `still running on ${d.stillRuns.name}: ${d.stillRuns.why}` : d.state}${why != null && why !== '' ? ` (${why})` : ''}`)
    // a start and a stop made at the same moment through two nodes: the later write wins everywhere
    if (d.desired !== asked) {
      process.stderr.write(`vgrid: a ${what === 'start' ? 'stop' : 'start'} of ${d.name} made at the same moment through another node won over this ${what}: it is desired ${d.desired}
`)
      process.exitCode = 1
    }
  }
}

async function consoleOf (argv: string[]): Promise<void> {
  const usage = 'vgrid vm console VM [--follow|-f (then what it prints, until Ctrl-C)] [--json] [--api HOST:PORT]: the last 64 KiB of its console log (read-only)'
  const { values: v, positionals } = parse(argv, { api: { type: 'string' }, json: { type: 'boolean' }, follow: { type: 'boolean', short: 'f' } }, usage, 1)
  if (positionals[0] == null) throw new CliError(`give a VM\nusage: ${usage}`, 2)
  if (v.follow === true && v.json === true) throw new CliError('--follow prints the console as it comes; --json gives one answer: give one of them', 2)
  const api = new ApiClient(v.api as string | undefined)
  const r = await api.get<ConsoleAnswer>(`/v1/vms/${enc(positionals[0])}/console`)
  if (v.json === true) return json(r)
  if (v.follow === true) await follow(api, positionals[0], r)
  process.stdout.write(r.console)
}

/** `vgrid node drain|undrain|forget NODE`; other `node` subcommands stay with node-label.ts */
export async function node (argv: string[]): Promise<void> {
  const [sub, ...rest] = argv
  if (sub !== 'drain' && sub !== 'undrain' && sub !== 'forget') throw new CliError(`unknown subcommand "node ${String(sub)}"\nusage: ${NODE_USAGE}`, 2)
  // its own line (bb38: each printed all three)
  const usage = NODE_USAGE.split('\n').map(l => l.trim()).find(l => l.startsWith(`vgrid node ${sub} `))!
  const { values: v, positionals } = parse(rest, { api: { type: 'string' }, json: { type: 'boolean' }, wait: { type: 'boolean' }, timeout: { type: 'string' }, force: { type: 'boolean' }, 'without-majority': { type: 'boolean' } }, usage, 1)
  if (positionals[0] == null) throw new CliError(`give a node (name or id)\nusage: ${usage}`, 2)
  if (v.wait === true && sub !== 'drain') throw new CliError('--wait is for drain', 2)
  if (v.force === true && sub === 'undrain') throw new CliError('--force is for drain and forget', 2)
  if (v['without-majority'] === true && sub !== 'forget') throw new CliError('--without-majority is for forget', 2)
  if (v.timeout != null && v.wait !== true) throw new CliError('--timeout is how long --wait waits: give --wait too', 2)
  // seconds, or a duration as every other flag takes (bb46: "5s" refused)
  const timeoutMs = waitTimeoutMs(v.timeout as string | undefined)
  const api = new ApiClient(v.api as string | undefined)
  const path = `/v1/nodes/${enc(positionals[0])}`
  if (sub === 'forget') {
    const query = [...(v.force === true ? ['force=true'] : []), ...(v['without-majority'] === true ? ['withoutMajority=true'] : [])]
    const r = await api.request<{ name: string, wasOnRoll?: boolean, writesGivenUp?: string[], withoutMajority?: boolean }>('DELETE', `${path}/roll${query.length > 0 ? `?${query.join('&')}` : ''}`)
    const lost = r.writesGivenUp ?? []
    return v.json === true
      ? json(r)
      : out(`${r.name}: forgotten (${r.wasOnRoll === false ? 'it had left the member roll; the volumes\' records of where their writes went no longer wait for it' : 'off the member roll'})${r.withoutMajority === true ? ', without a majority in sight, on your word that the members out of sight are gone for good' : ''}${lost.length > 0 ? `\nwrites these volumes may have had only on ${r.name} are given up (their copies on the nodes left, where there are any, are read as the newest now; an object with none reads as zeros; should it come back, its own copies count again): ${lost.join(', ')}` : ''}`)
  }
  const r = await api.request<{ node: string, name: string, draining: boolean, vms: string[] }>('POST', `${path}/${sub}`, v.force === true ? { force: true } : undefined)
  if (v.wait === true) return await drainWait(api, r, timeoutMs, v.json === true)
  if (v.json === true) return json(r)
  out(`${r.name}: ${r.draining ? 'draining' : 'schedulable'}${r.draining ? `; ${r.vms.length} VM(s) still on it${r.vms.length > 0 ? `: ${r.vms.join(', ')}` : ''}; its volume copies move to the other nodes in the background (--wait follows both)` : ''}`)
}

/** where each VM of a drain stands: still on the node, or where it went */
export interface DrainProgress {
  /** VMs whose lease the node still holds */
  on: string[]
  /** VMs that were on it, by where they are now: "running on NODE", "pending (REASON)", ... */
  moved: Record<string, string>
  /** nothing is on the node and no VM that left it is on its way (stopping, starting) */
  done: boolean
  /** VMs that left it and run nowhere now: no node fits them */
  stranded: string[]
  /** VMs that left it and are on their way (stopping, being placed, starting) */
  moving: string[]
}

/** Pure: the drain's progress from the VM list, for the VMs that were on `node` (by id) when it began. */
export function drainProgress (node: string, vms: readonly VmRow[], initial: readonly string[]): DrainProgress {
  // a stopped or failed VM whose lease the node still holds reserves nothing and runs
  // nothing there: started again, it is placed anew (never on a draining node)
  const isOn = (x: VmRow): boolean => x.nodeId === node && x.state !== 'stopped' && x.state !== 'failed'
  const on = vms.filter(isOn).map(x => x.name).sort()
  const moved: Record<string, string> = {}
  const stranded: string[] = []
  const moving: string[] = []
  for (const id of initial) {
    const x = vms.find(r => r.id === id)
    if (x == null) { moved[id] = 'removed'; continue }
    if (isOn(x)) continue
    // on its way: stopping, being claimed, starting; a VM that fits nowhere is pending for good
    // pending with no node fitting it, or whose new node is not alive and no other fits it (lostReason)
    const fitsNowhere = (x.state === 'pending' && x.reason?.startsWith('no node fits') === true) || (x.state === 'unknown' && x.reason?.includes('no other node fits it') === true)
    if (fitsNowhere) stranded.push(x.name)
    if (x.state === 'starting' || x.state === 'stopping' || ((x.state === 'pending' || x.state === 'unknown') && !fitsNowhere)) moving.push(x.name)
    moved[x.name] = x.node != null ? `${x.state} on ${x.node}` : `${x.state}${x.reason != null ? ` (${x.reason})` : ''}`
  }
  return { on, moved, done: on.length === 0 && moving.length === 0, stranded: stranded.sort(), moving: moving.sort() }
}

/** Follows a drain until nothing is left on the node, printing each change. */
export async function drainWait (through: Pick<ApiClient, 'get'>, r: { node: string, name: string, vms: string[] }, timeoutMs: number, asJson: boolean): Promise<void> {
  // the agent asked went away while the drain went on (bb40: a restart said only ECONNRESET): the drain stands
  const api: Pick<ApiClient, 'get'> = {
    get: async <T>(path: string): Promise<T> => await through.get<T>(path).catch((err: unknown) => {
      if (!(err instanceof CliError)) throw err
      const more = ` (the drain of ${r.name} stands, in the grid's document; follow it with \`vgrid node drain ${r.name} --wait\`, through another node if this one is down)`
      throw new CliError(err.message + more, err.exitCode, { code: err.code, detail: err.detail + more })
    })
  }
  const end = Date.now() + timeoutMs
  const said = new Map<string, string>()
  if (!asJson) out(`${r.name}: draining; ${r.vms.length} VM(s) on it${r.vms.length > 0 ? `: ${r.vms.join(', ')}` : ''}`)
  for (;;) {
    const { vms } = await api.get<{ vms: VmRow[] }>('/v1/vms')
    const p = drainProgress(r.node, vms, r.vms)
    if (!asJson) {
      for (const [vm, where] of Object.entries(p.moved)) {
        if (said.get(vm) === where) continue
        said.set(vm, where)
        say(`  ${vm}: ${where} (${p.on.length} left on ${r.name})`)
      }
    }
    if (p.done) {
      // a VM removed during the drain did not move (bb38 read "2 moved" of one moved and one removed)
      const removed = Object.values(p.moved).filter(w => w === 'removed').length
      const movedOff = Object.keys(p.moved).length - p.stranded.length - removed
      // then its volume copies (bb23: a drained node's leave left every volume on one copy),
      // also when VMs were left to run nowhere (--force: bb30 found the copies not waited for)
      const v = await volumesOff(api, r, end, timeoutMs, asJson)
      if (asJson) {
        json({ node: r.node, name: r.name, draining: true, vms: p.on, moved: p.moved, stranded: p.stranded, volumes: v })
        if (v.error != null || p.stranded.length > 0) process.exitCode = 1
        return
      }
      // a VM that had to leave and fits nowhere runs nowhere now: said, and the exit code says it too
      if (p.stranded.length > 0) throw new CliError(`${r.name}: drained${v.error == null && v.moved ? ' (and its volume copies)' : ''}, but ${p.stranded.length} VM(s) run nowhere now, no other node fits them: ${p.stranded.join(', ')} (${movedOff} moved off it); make room or \`vgrid node undrain ${r.name}\`${v.error != null ? `\n${v.error}` : ''}`)
      if (v.error != null) throw new CliError(v.error)
      return out(`${r.name}: drained; ${movedOff} VM(s) moved off it${removed > 0 ? ` (${removed} removed meanwhile)` : ''}${v.moved ? ', and its volume copies' : ''}`)
    }
    if (Date.now() > end) {
      // why they are still there, as vm ls says it (a node stopped for a restart: they move when its grace ends; a tester read only "still 4")
      const why = vms.find(x => p.on.includes(x.name) && x.reason != null)
      // none left on it, some not yet running elsewhere (bb20 read "still 0 VM(s) on it: ")
      if (p.on.length === 0) throw new CliError(escapeControls(`${r.name}: nothing runs on it any more, but after ${timeoutMs / 1000} s ${p.moving.length} VM(s) that left it are still on their way: ${p.moving.map(m => `${m} ${p.moved[m] ?? ''}`.trim()).join(', ')}`))
      throw new CliError(escapeControls(`${r.name}: still ${p.on.length} VM(s) on it after ${timeoutMs / 1000} s: ${p.on.join(', ')}${why != null ? `; ${why.name}: ${why.state}, ${why.reason!}` : ''}`))
    }
    await new Promise(resolve => setTimeout(resolve, 500))
  }
}

/** how long the copies must be said to stay before the drain's wait gives up on them */
const STAYS_MS = 10_000

/** Follows the volume copies off a drained node until none is left there and every volume is healthy (drain-volumes.ts). */
async function volumesOff (api: Pick<ApiClient, 'get'>, r: { name: string, node: string }, end: number, timeoutMs: number, asJson: boolean): Promise<VolumeDrainProgress & { moved: boolean, error?: string }> {
  let said = ''
  let moved = false
  /** since when the copies are said to stay (a node restarting meanwhile says so for a moment: rv27) */
  let staysSince: number | undefined
  /** since when the node is away with no restart under way (dead, or gone: bb36 waited the whole timeout) */
  let goneSince: number | undefined
  for (;;) {
    const a = await api.get<VolumesAnswer>('/v1/volumes')
    const p = volumeDrainProgress(r.node, a)
    // (a 404 only: an answer that failed says nothing of the node)
    const gone = p.away === true && awayForGood(await api.get<NodeView>(`/v1/nodes/${enc(r.node)}`).catch((err: unknown) => { if ((err as CliError).code === 'not_found') return null; throw err }))
    goneSince = gone ? goneSince ?? Date.now() : undefined
    if (gone && Date.now() - goneSince! >= STAYS_MS) return { ...p, moved, error: `${r.name}: its VMs moved off it, but it is down and not restarting, so no copy can move off it (volumes with other copies are repaired onto the nodes left). If it is gone for good, \`vgrid node forget ${r.name}\` (it names the writes only it may hold, if any); else start its agent again and wait again` }
    moved ||= p.holding.length > 0
    // no copy on it, now or since the drain began: nothing to wait for (a volume
    // degraded for a reason of its own, a dead node, is not this drain's)
    if (p.nothingThere && !moved) return { ...p, moved }
    const line = volumeDrainLine(r.name, p)
    if (!asJson && line !== said) out(said = line)
    if (p.done) return { ...p, moved }
    staysSince = p.stays == null ? undefined : staysSince ?? Date.now()
    if (p.stays != null && Date.now() - staysSince! >= STAYS_MS) return { ...p, moved, error: `${r.name}: its VMs moved off it, but its volume copies stay on it: ${p.stays}; removing or forgetting it now leaves the volumes with copies on it with fewer (\`vgrid node undrain ${r.name}\` to keep it)` }
    if (Date.now() > end) return { ...p, moved, error: `${r.name}: its VMs moved off it, but after ${timeoutMs / 1000} s its volume copies are still on their way (repair copies at its rate cap: give --timeout more for big volumes):${line.replace(/^ {2}volumes:/, '')}` }
    await new Promise(resolve => setTimeout(resolve, 1000))
  }
}

export async function ha (argv: string[]): Promise<void> {
  const { values: v } = parse(argv, { ...API_OPTION, ...JSON_OPTION }, 'vgrid ha [--json] [--api HOST:PORT]')
  const r = await new ApiClient(v.api as string | undefined).get<HaReport>('/v1/ha')
  // exit 1 when HA is not ok, with --json too (bb49: 0 there, 1 in text)
  if (!r.ok) process.exitCode = 1
  if (v.json === true) return json(r)
  for (const l of haLines(r)) out(l)
}

/** "a, b and c" (or "a, b or c") */
const listed = (xs: readonly string[], word: 'and' | 'or'): string => xs.length <= 1 ? xs.join('') : `${xs.slice(0, -1).join(', ')} ${word} ${xs.at(-1)!}`

/** `vgrid ha`'s answer, also in `vgrid status` (pure): a headline, then one line per reason, indented; control characters escaped (control-chars.ts) */
export function haLines (r: HaReport): string[] {
  return haText(r).map(escapeControls)
}

function haText (r: HaReport): string[] {
  const f = r.failover
  const lost = f?.ifLost
  const failover = f == null
    ? []
    : [`  a dead node's VMs start elsewhere ${(f.ms / 1000).toFixed(1)} s after it was last heard of: ${f.why}`,
        // bb47: the plain wait was said, and a crash then waited 55 s for locks that held nothing back before it
        ...lost == null ? [] : [`  but were ${listed(lost.nodes, 'or')} lost now, its VMs would start elsewhere only ${(lost.ms / 1000).toFixed(1)} s from now: ${listed(lost.locked, 'and')} came back from a restart lately and count${lost.locked.length === 1 ? 's' : ''} towards a takeover only once the vote${lost.locked.length === 1 ? '' : 's'} ${lost.locked.length === 1 ? 'it' : 'they'} may have lent, to keep VMs alive elsewhere, ${lost.locked.length === 1 ? 'has' : 'have'} lapsed`]]
  // bb47: after a rolling maintenance half a group shared one node, and ha said only ok
  const crowded = (r.crowded ?? []).map(c => `  anti-affinity group ${c.group}: ${listed(c.vms, 'and')} share ${c.node} (losing it stops ${c.vms.length === 2 ? 'both' : 'all of them'}), though ${listed(c.could.length <= 3 ? c.could : [...c.could.slice(0, 3), `${c.could.length - 3} more`], 'and')} could take one now with none of the group (vgrid vm stop VM, then vgrid vm start VM, places it anew)`)
  if (r.ok) return ['HA ok: every VM could be placed again if any one node failed', ...crowded, ...failover]
  return [
    'HA not ok:',
    ...r.noMajority != null ? [`  this node ${r.noMajority}: no VM is placed or taken over until a majority of the grid is in sight`] : [],
    ...r.noMargin != null ? [`  ${r.noMargin}`] : [],
    // without a majority in sight, a node this one cannot see may well run its VMs (the other side of a partition)
    ...(r.lost ?? []).map(s => r.noMajority != null
      ? `  ${s.name} is not in sight: whether ${s.vms.join(', ')} run${s.vms.length === 1 ? 's' : ''} there is not known here, and nothing is taken over from here`
      : s.restarting === true
        ? `  ${s.name} is restarting: ${s.vms.join(', ')} run${s.vms.length === 1 ? 's' : ''} on there for its restart grace; should it not come back, no other node fits ${s.vms.length === 1 ? 'it' : 'them'}: ${strandedWhy(s)}`
        : `  ${s.name} is not alive: ${strandedWhy(s)} run${s.vms.length === 1 ? 's' : ''} nowhere, no other node fits`),
    ...r.stranded.map(s => `  losing ${s.name} strands ${strandedWhy(s)}`),
    ...(r.unplaced ?? []).map(u => `  ${u.vm} runs nowhere: ${u.reason}`),
    ...(r.disks ?? []).map(d => `  ${d.vm}: ${d.reason}`),
    ...crowded,
    ...failover
  ]
}

/** one event of `vm show`'s history (pure; a detail of several lines below it), its control characters escaped (control-chars.ts: a detail may hold a guest's output) */
export function historyLine (e: { at: string, event: string, node?: string, epoch?: number, detail?: string, local?: true, clockMs?: number }): string {
  // a lease's reason often says the same as the line ("stopped on h2: desired stopped"): not twice
  const said = `${e.event}${e.node != null ? ` on ${e.node}` : ''}: `
  // or its event alone ("killed on h1: killed: fenced: ...", bb44)
  const detail = e.detail?.startsWith(said) === true ? e.detail.slice(said.length) : e.detail?.startsWith(`${e.event}: `) === true ? e.detail.slice(e.event.length + 2) : e.detail
  // a detail's newlines were written escaped (`\n`, history.ts): its lines below it, indented, as stateLines does a reason's (bb53)
  const [first, ...more] = detail?.split(/(?:\\r)?\\n/).filter((l, i) => i === 0 || l.trim() !== '') ?? []
  const line = escapeControls(`${e.at}  ${e.event}${e.node != null ? ` on ${e.node}` : ''}${e.epoch != null ? ` (epoch ${e.epoch})` : ''}${first != null ? `: ${first}` : ''}${e.local === true ? '  [seen by this node only]' : ''}${e.clockMs != null ? `  [${e.node ?? 'its node'}'s clock runs ${Math.abs(e.clockMs / 1000).toFixed(1)} s ${e.clockMs > 0 ? 'ahead' : 'behind'}: shown in this node's time]` : ''}`)
  return [line, ...more.map(l => `    ${escapeControls(l.trim())}`)].join('\n')
}
