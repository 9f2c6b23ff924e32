// The inputs of placement, as plain data: every agent builds them from the same
// document (roll, labels, leases) and its membership table, so that the pure
// functions beside this file decide the same way everywhere.

export interface Capacity {
  cpu: number
  memoryBytes: number
}

/** a node as placement sees it */
export interface NodeView {
  id: string
  name: string
  /** alive in this agent's membership table (suspect, dead, left or unknown: false) */
  alive: boolean
  /**
   * local time since which it has been alive without a break (absent: since ever);
   * says since when this agent's majority holds (fence.ts, `majoritySince`)
   */
  aliveSince?: number
  /** marked draining in the member roll */
  draining: boolean
  capacity: Capacity
  /** operator labels (document) merged over the node's own (advert) */
  labels: Record<string, string>
  /** the VM drivers its probe found usable; absent: not known yet (not probed, or an older agent) */
  drivers?: readonly string[]
  /** its agent boots a qemu VM from its first volume (an agent of an earlier release says nothing and cannot) */
  volumeBoot?: boolean
  /** the fence timeout it advertises (ms); absent: not known (an older agent, or no advert seen) */
  fenceTimeoutMs?: number
  /** the silence timeout in force it advertises (ms); absent: not known (an older agent, or no advert seen) */
  silenceMs?: number
  /** the liveness window it advertises (ms; protocol/liveness.ts); absent: not known, or an older agent that has none */
  livenessMs?: number
  /** why its overlay (WireGuard) is down, as it advertises; absent: up, off, or not said (an older agent) */
  overlayDown?: string
  /** the members it does not reach though others do (a partial cut), as it advertises; absent: none, or not said */
  unreached?: readonly string[]
  /** how little room the disk of its data dir has, as it advertises when that counts as full; absent: room, or not said */
  dataDiskFull?: string
}

/** what a VM asks of a node */
export interface Demand {
  vm: string
  cpu: number
  memoryBytes: number
  /** required node labels, key -> value */
  constraints: Record<string, string>
  /** VMs of one group go to different nodes where possible */
  antiAffinity?: string
  /** the driver that runs it (absent: any) */
  driver?: string
  /** it has input or output terminals: its declared connections need the node's overlay */
  links?: boolean
  /** it has volumes as disks: their holders must be reachable from its node */
  disks?: boolean
  /** it boots from its first volume (qemu, neither kernel nor image): an agent that can must run it */
  volumeBoot?: boolean
  /** the nodes its link peers run on (absent: not known, and every node cut off from some member counts as cut off from them) */
  peerNodes?: readonly string[]
}

/** resources a node has reserved for one VM (a lease, or a claim being planned) */
export interface Holding {
  vm: string
  holder: string
  cpu: number
  memoryBytes: number
  antiAffinity?: string
}

export type Strategy = 'spread' | 'binpack'
