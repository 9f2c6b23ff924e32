// Namespace fixtures for the LCM tests: hosts joined by veth pairs, everything
// named after this process's PID and removed by name in t.teardown.
import type { ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import { checkSupport, createNamespace, deleteNamespace, ip, nsRun, pickSubnet, which } from '../../node/netns/netns.ts'
import { probeBackend, WireguardUnavailableError } from '../../node/lcm/wireguard.ts'

let counter = 0

/** A unique namespace name for this test process. */
export function nsName (tag: string): string {
  return `lcm-${process.pid}-${tag}-${counter++}`
}

/** Why these tests cannot run here, or null. */
export async function skipReason (opts: { nft?: boolean } = {}): Promise<string | null> {
  const s = checkSupport(opts)
  if (!s.ok) return s.reason ?? 'no namespaces'
  if (which('busybox') == null) return 'busybox not found (install busybox-static): the tests ping with it'
  try {
    await probeBackend(null)
  } catch (err) {
    if (err instanceof WireguardUnavailableError) return err.message
    throw err
  }
  return null
}

/** Makes namespaces, deleted (with whatever runs in them) when the test ends. */
export async function makeNamespaces (t: ExecutionContext, tags: string[]): Promise<string[]> {
  const names: string[] = []
  for (const tag of tags) {
    const n = nsName(tag)
    t.teardown(async () => { await deleteNamespace(n, 1000) })
    await createNamespace(n)
    names.push(n)
  }
  return names
}

/** A veth pair between two namespaces with an address on each end. */
export async function veth (a: { ns: string, dev: string, cidr?: string }, b: { ns: string, dev: string, cidr?: string }): Promise<void> {
  await ip(['-n', a.ns, 'link', 'add', a.dev, 'type', 'veth', 'peer', 'name', b.dev, 'netns', b.ns])
  for (const e of [a, b]) {
    if (e.cidr != null) await ip(['-n', e.ns, 'addr', 'add', e.cidr, 'dev', e.dev])
    await ip(['-n', e.ns, 'link', 'set', e.dev, 'up'])
  }
}

/**
 * "VM" namespaces each joined to `node` by a veth (eth0 inside, `dev` on the node end)
 * and routed through it as the LCM routes VMs: the VM's address a /32 on each side,
 * proxy ARP without the kernel's random delay (up to 0.8 s), forwarding on.
 */
export async function routeThrough (node: string, vms: Array<{ ns: string, dev: string, address: string }>): Promise<void> {
  for (const { ns, dev, address } of vms) {
    await veth({ ns, dev: 'eth0', cidr: `${address}/32` }, { ns: node, dev })
    await ip(['-n', ns, 'route', 'add', 'default', 'dev', 'eth0'])
    await ip(['-n', node, 'route', 'add', `${address}/32`, 'dev', dev])
    await nsRun(node, 'sh', ['-c', `echo 1 > /proc/sys/net/ipv4/conf/${dev}/proxy_arp; echo 0 > /proc/sys/net/ipv4/neigh/${dev}/proxy_delay`])
  }
  await nsRun(node, 'sh', ['-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward'])
}

export async function subnet (): Promise<string> {
  return await pickSubnet(process.pid % 200)
}

/** One ping from `ns` to `addr`; true when it was answered. */
export async function pingOnce (ns: string, addr: string, waitS = 2): Promise<boolean> {
  const out = await nsRun(ns, 'busybox', ['ping', '-c', '1', '-W', String(waitS), addr], { allowFail: true, timeoutMs: (waitS + 3) * 1000 })
  return /1 packets received/.test(out)
}

export interface PingStream { stop: () => Promise<{ replies: number[], maxGapMs: number, sent: number }> }

/**
 * Pings every `intervalS` from `ns`, noting when each reply arrives, until stop().
 * maxGapMs is the longest time between two consecutive replies.
 */
export function pingStream (t: ExecutionContext, ns: string, addr: string, intervalS = 0.1): PingStream {
  const p = spawn(which('ip') ?? 'ip', ['netns', 'exec', ns, which('busybox') ?? 'busybox', 'ping', '-i', String(intervalS), addr], { stdio: ['ignore', 'pipe', 'ignore'] })
  t.teardown(() => { if (p.exitCode == null) p.kill('SIGKILL') })
  const replies: number[] = []
  let maxSeq = -1
  let buf = ''
  p.stdout.on('data', (d: Buffer) => {
    buf += d.toString()
    const lines = buf.split('\n')
    buf = lines.pop() ?? ''
    for (const l of lines) {
      const m = /seq=(\d+)/.exec(l)
      if (m != null) { replies.push(Date.now()); maxSeq = Math.max(maxSeq, Number(m[1])) }
    }
  })
  return {
    stop: async () => {
      const exited = new Promise(resolve => p.once('exit', resolve))
      p.kill('SIGINT')
      await exited
      let maxGapMs = 0
      for (let i = 1; i < replies.length; i++) maxGapMs = Math.max(maxGapMs, replies[i]! - replies[i - 1]!)
      return { replies, maxGapMs, sent: maxSeq + 1 }
    }
  }
}
