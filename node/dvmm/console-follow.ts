// `vgrid vm console VM --follow`: the console log's tail, then what the guest prints
// after it, asked of the agent once a second (the log is a file on the VM's node): each
// ask says where the last answer ended (`from`, in run `run`), and the agent answers
// what came since, at most 64 KiB, with the offsets it begins and ends at. Agents of an
// earlier release answer the tail with its end. `newOutput` decides what a poll adds (pure).
import { ApiClient, CliError } from '../cli/client.ts'

/** `console` is the log's bytes [start, size); `run`: when the run began (a new run's log starts over) */
export interface ConsoleAnswer { vm: string, node: string, console: string, start?: number, size?: number, run?: number, epoch?: number }

/** how often the follower asks */
const FOLLOW_EVERY_MS = 1000

/**
 * What a console answer adds to what was printed from the one before (pure): what came
 * since; all of the answer after a line saying why when the VM runs anew elsewhere
 * (another node or epoch) or again here (another run), its log was cut back or started
 * over (the answer begins before the last end), or more came than one answer holds (it
 * begins past it). From an agent of an earlier release (no `start`): the bytes the tail
 * grew by, or the tail again when it tells no size.
 */
export function newOutput (prev: ConsoleAnswer, next: ConsoleAnswer): string {
  if (next.node !== prev.node || next.epoch !== prev.epoch) return `\n[vgrid: ${next.vm} runs anew${next.node !== prev.node ? ` on ${next.node}` : ''}${next.epoch != null ? ` (epoch ${next.epoch})` : ''}: its console there]\n${next.console}`
  // a restart on the same node keeps the epoch, and its log starts over (rv45)
  if (next.run !== prev.run) return `\n[vgrid: ${next.vm} started again: its new run's console]\n${next.console}`
  if (prev.size == null || next.size == null) return next.console === prev.console ? '' : `\n[vgrid: the agent tells no log size: the console's tail again]\n${next.console}`
  // an earlier release's tail: counted by its text encoded again (rv45: this can split a character)
  const start = next.start ?? next.size - Buffer.byteLength(next.console)
  // an answer to an ask from the last end begins there, unless the log was cut back
  const continued = next.start != null && prev.start != null
  if (next.size < prev.size || (continued && start < prev.size)) return `\n[vgrid: the console log was cut back or started over]\n${next.console}`
  if (start > prev.size) return `\n[vgrid: ${start - prev.size} bytes of output went by between two reads]\n${next.console}`
  if (continued) return next.console
  // a tail: an earlier release's, or the first of this release's after one (its agent
  // upgraded under the VM, rv46: read as a cut back, up to 64 KiB printed again)
  return Buffer.from(next.console, 'utf8').subarray(prev.size - start).toString('utf8')
}

/** the ask that continues from `prev`: what came past its end in its run */
export function nextAsk (vm: string, prev: ConsoleAnswer): string {
  const path = `/v1/vms/${encodeURIComponent(vm)}/console`
  // an agent of an earlier release answered no start: it may not take the query either
  if (prev.start == null || prev.size == null) return path
  return `${path}?from=${prev.size}${prev.run != null ? `&run=${prev.run}` : ''}`
}

/** Prints the console, then what comes, until interrupted (errors on the way are said once each, and it keeps asking). */
export async function follow (api: ApiClient, vm: string, first: ConsoleAnswer, write: (s: string) => void = s => process.stdout.write(s)): Promise<never> {
  write(first.console)
  let prev = first
  let lastError = ''
  for (;;) {
    await new Promise(resolve => setTimeout(resolve, FOLLOW_EVERY_MS))
    try {
      const next = await api.get<ConsoleAnswer>(nextAsk(vm, prev))
      write(newOutput(prev, next))
      prev = next
      lastError = ''
    } catch (err) {
      // a 400 to an ask with from and run: an agent of an earlier release took this one's
      // place (a downgrade, rv48), which refuses the query it does not know; asked plainly
      // from now on (newOutput then reads its tails, which tell no run), not refused once a
      // second for ever
      if (err instanceof CliError && err.exitCode === 2 && prev.start != null) {
        prev = { ...prev, start: undefined, run: undefined }
        continue
      }
      // a VM removed, or its agent gone: said, and followed on (it may come back)
      const msg = err instanceof CliError ? err.message : (err as Error).message
      if (msg !== lastError) process.stderr.write(`vgrid: ${msg} (still following; Ctrl-C ends)\n`)
      lastError = msg
    }
  }
}
