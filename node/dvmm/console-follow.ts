// `vgrid vm console VM --follow`: the console log's tail, then what the guest prints
// after it, asked of the agent once a second (the log is a file on the VM's node; the
// API answers its last 64 KiB with its size). `newOutput` decides what a poll adds (pure).
import { ApiClient, CliError } from '../cli/client.ts'

/** `size`: the offset the tail ends at; `run`: when the run began (a new run's log starts over) */
export interface ConsoleAnswer { vm: string, node: string, console: string, size?: number, run?: number, epoch?: number }

/** how often the follower asks */
const FOLLOW_EVERY_MS = 1000

/**
 * What a console answer adds to what was printed from the one before (pure): the bytes
 * the log grew by, from the end of the tail; all of the tail, after a line saying why,
 * when the VM runs anew elsewhere (another node or epoch), its log was cut back or
 * started over (smaller than before), more came than the tail holds, or the agent sends
 * no size (one of an earlier release).
 */
export function newOutput (prev: ConsoleAnswer, next: ConsoleAnswer): string {
  if (next.node !== prev.node || next.epoch !== prev.epoch) return `\n[vgrid: ${next.vm} runs anew${next.node !== prev.node ? ` on ${next.node}` : ''}${next.epoch != null ? ` (epoch ${next.epoch})` : ''}: its console there]\n${next.console}`
  // a restart on the same node keeps the epoch, and its log starts over (rv45)
  if (next.run !== prev.run) return `\n[vgrid: ${next.vm} started again: its new run's console]\n${next.console}`
  if (prev.size == null || next.size == null) return next.console === prev.console ? '' : `\n[vgrid: the agent tells no log size: the console's tail again]\n${next.console}`
  if (next.size < prev.size) return `\n[vgrid: the console log was cut back or started over]\n${next.console}`
  const grew = next.size - prev.size
  const tail = Buffer.from(next.console, 'utf8')
  if (grew > tail.length) return `\n[vgrid: ${grew - tail.length} bytes of output went by between two reads]\n${next.console}`
  return tail.subarray(tail.length - grew).toString('utf8')
}

/** Prints the console, then what comes, until interrupted (errors on the way are said once each, and it keeps asking). */
export async function follow (api: ApiClient, vm: string, first: ConsoleAnswer, write: (s: string) => void = s => process.stdout.write(s)): Promise<never> {
  write(first.console)
  let prev = first
  let lastError = ''
  for (;;) {
    await new Promise(resolve => setTimeout(resolve, FOLLOW_EVERY_MS))
    try {
      const next = await api.get<ConsoleAnswer>(`/v1/vms/${encodeURIComponent(vm)}/console`)
      write(newOutput(prev, next))
      prev = next
      lastError = ''
    } catch (err) {
      // a VM removed, or its agent gone: said, and followed on (it may come back)
      const msg = err instanceof CliError ? err.message : (err as Error).message
      if (msg !== lastError) process.stderr.write(`vgrid: ${msg} (still following; Ctrl-C ends)\n`)
      lastError = msg
    }
  }
}
