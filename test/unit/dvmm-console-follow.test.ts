// What `vgrid vm console --follow` asks and prints of each answer after the first (pure:
// node/dvmm/console-follow.ts newOutput, nextAsk): what came since the last answer's end,
// or all of the answer after a line saying why; from agents of an earlier release (no
// `start`), the bytes the tail grew by.
import test from 'ava'
import { newOutput, nextAsk, type ConsoleAnswer } from '../../node/dvmm/console-follow.ts'

const at = (console: string, size: number | undefined, node = 'host1', epoch = 1, run = 5): ConsoleAnswer => ({ vm: 'web', node, console, ...(size != null ? { size } : {}), epoch, run })

/** an answer of what came past an ask: the log's bytes [start, start + its length) */
const since = (console: string, start: number, node = 'host1', epoch = 1, run = 5): ConsoleAnswer => ({ vm: 'web', node, console, start, size: start + Buffer.byteLength(console), epoch, run })

test('each ask continues from the last answer\'s end in its run; the answer is what came since, printed as it is', t => {
  t.is(nextAsk('web', since('boot\n', 0)), '/v1/vms/web/console?from=5&run=5')
  t.is(nextAsk('a b', at('boot\n', 5)), '/v1/vms/a%20b/console', 'an earlier release\'s agent is asked for the tail, as it was')
  t.is(newOutput(since('boot\n', 0), since('ready\n', 5)), 'ready\n')
  t.is(newOutput(since('boot\n', 0), since('', 5)), '')
  // whatever its bytes: the agent cut it at whole characters and counted the rest
  t.is(newOutput(since('a', 0), since('\ufffd\ufffdé', 1)), '\ufffd\ufffdé')
  t.is(newOutput(since('boot\n', 0), since('tail', 9)), '\n[vgrid: 4 bytes of output went by between two reads]\ntail')
  // an agent that found the log shorter than the ask's end answers its tail from before it
  t.is(newOutput(since('long log', 2_000_000), since('tail', 100)), '\n[vgrid: the console log was cut back or started over]\ntail')
  t.is(newOutput(since('old', 70_000), since('new run', 0, 'host1', 1, 9)), '\n[vgrid: web started again: its new run\'s console]\nnew run')
  // the agent upgraded under the VM (same run): its first answer, a tail with a start, continues the old one's (rv46)
  t.is(newOutput(at('boot\nready\n', 11), since('boot\nready\nmore\n', 0)), 'more\n')
  t.is(newOutput(at('abc', 100_003), since('bcdefg', 100_001)), 'defg')
})

test('from an earlier release: what the log grew by, from the end of the tail; nothing when it did not grow', t => {
  t.is(newOutput(at('boot\n', 5), at('boot\nready\n', 11)), 'ready\n')
  t.is(newOutput(at('boot\n', 5), at('boot\n', 5)), '')
  // a tail that dropped its start (64 KiB kept): still its end
  t.is(newOutput(at('abcdef', 100_000), at('cdefgh', 100_002)), 'gh')
  // bytes, not characters
  t.is(newOutput(at('a', 1), at('aé!', 4)), 'é!')
})

test('the whole tail after a line saying why: run anew elsewhere, cut back, more than the tail, no size', t => {
  t.is(newOutput(at('x', 1), at('fresh\n', 6, 'host2', 2)), '\n[vgrid: web runs anew on host2 (epoch 2): its console there]\nfresh\n')
  t.is(newOutput(at('x', 1), at('fresh\n', 6, 'host1', 2)), '\n[vgrid: web runs anew (epoch 2): its console there]\nfresh\n')
  t.is(newOutput(at('long log', 2_000_000), at('tail', 1_048_576)), '\n[vgrid: the console log was cut back or started over]\ntail')
  // restarted on the same node (the epoch kept): its new log, larger than the old one, is not read as growth (rv45)
  t.is(newOutput(at('old', 70_000), at('new run', 72_663, 'host1', 1, 9)), '\n[vgrid: web started again: its new run\'s console]\nnew run')
  t.is(newOutput(at('abc', 3), at('xyz', 10)), '\n[vgrid: 4 bytes of output went by between two reads]\nxyz')
  t.is(newOutput(at('abc', undefined), at('abcd', undefined)), '\n[vgrid: the agent tells no log size: the console\'s tail again]\nabcd')
  t.is(newOutput(at('abc', undefined), at('abc', undefined)), '')
})

test('a follower whose agent is replaced by an earlier release (a 400 to its query) asks plainly from then on, not refused for ever (rv48)', async t => {
  const { follow } = await import('../../node/dvmm/console-follow.ts')
  const { CliError } = await import('../../node/cli/client.ts')
  const asked: string[] = []
  const printed: string[] = []
  let done!: () => void
  const finished = new Promise<void>(resolve => { done = resolve })
  const api = {
    get: async (path: string): Promise<ConsoleAnswer> => {
      asked.push(path)
      if (path.includes('?')) throw new CliError('the query parameter from is not taken here (invalid)', 2)
      if (asked.length >= 3) { done(); return await new Promise(() => {}) }
      return { vm: 'web', node: 'h1', console: 'ab\ncd\n', size: 6, epoch: 1 }
    }
  }
  void follow(api as never, 'web', { vm: 'web', node: 'h1', console: 'ab\n', start: 0, size: 3, run: 5, epoch: 1 }, s => { printed.push(s) })
  await finished
  t.deepEqual(asked, ['/v1/vms/web/console?from=3&run=5', '/v1/vms/web/console', '/v1/vms/web/console'])
  t.is(printed.join(''), 'ab\ncd\n', 'what the old agent\'s tail grew by')
})
