// The NBD sessions that write a volume on a node, said for people: a plain client's
// (an import, an export's client) apart from a VM's disk (its QEMU, running or still
// stopping), so a refusal right after `vm rm` does not send the user looking for a
// client to disconnect (a tester).

/** `vmDisks`: of `writers`, the sessions of a VM's disk (its QEMU, running or stopping) */
export interface NodeWriters { node: string, name?: string, writers: number, vmDisks?: number }

/** a node's sessions said for people: `1 session on d3`, `1 VM disk session on d3 (a VM runs there, or still stops)` */
export function sayWriters (w: NodeWriters): string {
  const where = w.name ?? `node ${w.node}`
  const vm = w.vmDisks ?? 0
  const plain = w.writers - vm
  const parts = [
    ...(plain > 0 ? [`${plain} session${plain === 1 ? '' : 's'} on ${where}`] : []),
    ...(vm > 0 ? [`${vm} VM disk session${vm === 1 ? '' : 's'} on ${where} (a VM runs there, or still stops)`] : [])
  ]
  return parts.join(', ')
}
