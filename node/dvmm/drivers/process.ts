// The `process` driver: a VM is a command run in its own network namespace (a veth
// pair to the node) with cgroup cpu and memory limits from its spec. A light
// appliance for development and tests; the same lifecycle as a real VM.
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'
import { checkSupport } from '../../netns/netns.ts'
import { createVeth, deleteVeth, writeVmHosts, DEFAULT_LINK_RANGE } from '../host/net.ts'
import { terminalEnv, type VmRecord } from './common.ts'
import { asUser, resolveUser, type UserIds } from '../host/users.ts'
import { groupId } from '../../groups.ts'
import { HostDriver, type HostDriverComponents, type HostDriverInit } from './host-base.ts'
import { DriverError, type DriverVmSpec, type ProbeResult, type VmNetwork } from './types.ts'

export type ProcessDriverComponents = HostDriverComponents
export type ProcessDriverInit = HostDriverInit

function executable (file: string): boolean {
  try { accessSync(file, constants.X_OK); return true } catch { return false }
}

export class ProcessDriver extends HostDriver {
  readonly name = 'process' as const
  protected readonly boots = ['command'] as const

  constructor (components: ProcessDriverComponents, init: ProcessDriverInit) {
    super(components, init, 'process')
  }

  protected async probeDriver (): Promise<ProbeResult> {
    const ns = checkSupport()
    if (!ns.ok) return { ok: false, detail: ns.reason ?? 'no network namespaces' }
    return { ok: true, detail: 'commands run in their own network namespace' }
  }

  protected check (spec: DriverVmSpec): void {
    if ((spec.disks?.length ?? 0) > 0) throw new DriverError('bad-spec', 'disks: a process VM cannot attach volumes (it has no block devices); use the qemu driver', 'disks')
    if (spec.boot.kind !== 'command') return
    const cmd = spec.boot.command[0]!
    const found = cmd.includes('/') ? executable(cmd) : (process.env.PATH ?? '').split(delimiter).some(d => d !== '' && executable(join(d, cmd)))
    if (!found) throw new DriverError('bad-spec', `boot.command[0]: "${cmd}" is not an executable file`, 'boot.command[0]')
    if (spec.boot.user !== undefined) userOf(spec.boot.user)
  }

  protected async setupNetwork (spec: DriverVmSpec, slot: number): Promise<VmNetwork> {
    return await createVeth(this.netKey(spec.id), this.init.linkRange ?? DEFAULT_LINK_RANGE, slot, this.init.nodeNetns, spec.overlay)
  }

  protected async teardownNetwork (rec: VmRecord): Promise<void> {
    await deleteVeth(this.netKey(rec.id), rec.nodeNetns)
  }

  protected command (rec: VmRecord): { argv: string[], env?: Record<string, string>, netns?: string } {
    const boot = rec.spec.boot
    if (boot.kind !== 'command') throw new DriverError('bad-spec', 'boot.kind: the process driver runs commands', 'boot.kind')
    // network: false shares the node's namespace (no interface of its own)
    const o = rec.network !== undefined ? rec.spec.overlay : undefined
    // the terminal names as of the start (the environment cannot change later; /etc/hosts does)
    let env = o === undefined ? boot.env : { ...boot.env, VGRID_ADDRESS: o.address, ...terminalEnv(o.names ?? {}) }
    // a user of the node, without capabilities (see host/users.ts); checked at start, gone since: refused
    if (boot.user === undefined) return { argv: boot.command, env, netns: rec.network?.netns }
    const u = userOf(boot.user)
    env = { HOME: u.home, USER: u.name, LOGNAME: u.name, ...env }
    return { argv: asUser(u, boot.command), env, netns: rec.network?.netns }
  }

  /** A link made or removed while the VM runs: its /etc/hosts follows at once. */
  async setNames (id: string, names: Record<string, string>): Promise<void> {
    const rec = this.load(id)
    if (rec?.network?.netns === undefined || (rec.state !== 'running' && rec.state !== 'starting')) return
    writeVmHosts(this.netKey(id), names)
  }

  protected async requestStop (rec: VmRecord): Promise<void> {
    // the whole session: the command and whatever it started
    if (rec.pid !== undefined && this.alive(rec)) process.kill(-rec.pid, 'SIGTERM')
  }

  protected override extraDetail (rec: VmRecord): Record<string, string> {
    return rec.network?.netns !== undefined ? { netns: rec.network.netns } : { netns: 'none' }
  }
}

/** the node's user a VM runs as, without capabilities: refused when there is none, or when it is root */
function userOf (user: string): UserIds {
  const u = resolveUser(user)
  if (u == null) throw new DriverError('bad-spec', `boot.user: there is no user "${user}" on this node`, 'boot.user')
  // root without capabilities still owns root's files (the cluster key): never said to be confined (bb48)
  if (u.uid === 0) throw new DriverError('bad-spec', `boot.user: "${user}" is uid 0 on this node, root: a VM runs as another user, without capabilities, or as root with all of them (no user given)`, 'boot.user')
  // nor as root's group or the vgrid group (its API socket): a uid with no passwd entry
  // runs with the gid of its number, which may be a system group's (rv47)
  if (u.gid === 0 || u.gid === groupId('vgrid')) throw new DriverError('bad-spec', `boot.user: "${user}" has group ${u.gid === 0 ? 'root' : 'vgrid'} (gid ${u.gid}) on this node, which would give the VM ${u.gid === 0 ? 'root\'s group\'s files' : 'the grid\'s API and volumes'}: give a user of another group`, 'boot.user')
  return u
}

