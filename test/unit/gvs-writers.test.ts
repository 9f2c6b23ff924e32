// One node writes a volume at a time (node/gvs/writers.ts): a plain export's session asks
// the other nodes before it starts writing, and again after a quiet spell; nodes that
// start at the same moment leave exactly one writing.
import test from 'ava'
import type { BlockDevice } from '../../node/gvs/block-device.ts'
import { Writers, claimVerdict, type ClaimAnswer } from '../../node/gvs/writers.ts'
import { prng } from '../helpers/prng.ts'

function device (): BlockDevice & { writes: number } {
  const d = {
    size: 1 << 20,
    readOnly: false,
    writes: 0,
    read: async (_o: number, n: number) => new Uint8Array(n),
    write: async () => { d.writes++ },
    flush: async () => {},
    trim: async () => { d.writes++ },
    writeZeroes: async () => { d.writes++ }
  }
  return d
}

test('a plain export\'s session writes only while no other node\'s client does, asking once per busy spell', async t => {
  let elsewhere: string | null = '1 client(s) on h2'
  let asked = 0
  const ws = new Writers(200, async () => { asked++; await new Promise(resolve => setTimeout(resolve, 20)); return elsewhere })
  const dev = device()
  const h = ws.handle('vol-aaaaaaaaaaaa', dev, { exclusive: true })
  await t.throwsAsync(h.write(0, new Uint8Array(512), false), { message: /is being written on another node \(1 client\(s\) on h2\)/ })
  await t.throwsAsync(h.writeZeroes(0, 512, false), { message: /another node/ })
  t.is(dev.writes, 0, 'nothing of a refused write reaches the volume')
  t.is(ws.count('vol-aaaaaaaaaaaa'), 0, 'a refused session is no writer')
  // the other client stopped: several writes at once ask once
  elsewhere = null
  asked = 0
  await Promise.all([h.write(0, new Uint8Array(512), false), h.write(512, new Uint8Array(512), false), h.trim(0, 512, false)])
  t.is(asked, 1)
  t.is(dev.writes, 3)
  t.is(ws.count('vol-aaaaaaaaaaaa'), 1)
  await h.write(0, new Uint8Array(512), false)
  t.is(asked, 1, 'a busy writer does not ask again')
  // quiet for longer than idleMs: another node may have started meanwhile, so it asks again
  await new Promise(resolve => setTimeout(resolve, 250))
  elsewhere = '2 client(s) on h3'
  await t.throwsAsync(h.write(0, new Uint8Array(512), false), { message: /h3/ })
  t.is(asked, 2)
})

test('a VM disk\'s session (pinned to its writer epoch) and reads never ask', async t => {
  let asked = 0
  const ws = new Writers(200, async () => { asked++; return 'someone' })
  const dev = device()
  const pinned = ws.handle('vol-aaaaaaaaaaaa', dev)
  await pinned.write(0, new Uint8Array(512), false)
  const plain = ws.handle('vol-aaaaaaaaaaaa', dev, { exclusive: true })
  await plain.read(0, 512)
  await plain.flush()
  t.is(asked, 0)
  t.is(dev.writes, 1)
  // a VM disk's session is a writer while it is open, quiet or not: a plain session elsewhere is refused meanwhile
  const idle = ws.handle('vol-bbbbbbbbbbbb', dev)
  await new Promise(resolve => setTimeout(resolve, 250))
  t.is(ws.count('vol-bbbbbbbbbbbb'), 1)
  ws.release(idle)
  t.is(ws.count('vol-bbbbbbbbbbbb'), 0, 'until it ends')
})

test('property: nodes that start writing one volume at about the same moment: exactly one writes, whatever the message delays', async t => {
  const VOL = 'vol-aaaaaaaaaaaa'
  const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
  for (let seed = 1; seed <= 40; seed++) {
    const r = prng(seed)
    const ids = ['n1', 'n2', 'n3'].slice(0, 2 + (seed % 2))
    const nodes = new Map<string, Writers>()
    // each node asks every other (as service.ts claimAnswers): the request arrives after a
    // random delay and is answered there and then (answerClaim), the answer after another
    for (const id of ids) {
      nodes.set(id, new Writers(60_000, async () => {
        const answers: ClaimAnswer[] = await Promise.all(ids.filter(o => o !== id).map(async o => {
          await sleep(Math.floor(r() * 8))
          const a = nodes.get(o)!.answerClaim(VOL, id, id < o)
          await sleep(Math.floor(r() * 8))
          return { node: o, name: o, ...a }
        }))
        return claimVerdict(id, answers)
      }))
    }
    const results = await Promise.all(ids.map(async id => {
      await sleep(Math.floor(r() * 6))
      const h = nodes.get(id)!.handle(VOL, device(), { exclusive: true })
      try { await h.write(0, new Uint8Array(512), false); return 'wrote' } catch (err) { return (err as Error).message }
    }))
    const wrote = ids.filter((_, i) => results[i] === 'wrote')
    t.is(wrote.length, 1, `seed ${seed}: ${JSON.stringify(results)}`)
    for (const [i, m] of results.entries()) if (m !== 'wrote') t.regex(m, /is being written on another node/, `seed ${seed}: ${ids[i]}`)
    t.deepEqual(ids.map(id => nodes.get(id)!.count(VOL)), ids.map(id => wrote.includes(id) ? 1 : 0), `seed ${seed}: only the winner counts as a writer`)
  }
})

test('claimVerdict: writers anywhere refuse; a claim at the same moment refuses only from a smaller id', t => {
  const a = (node: string, writers: number, claiming: boolean): ClaimAnswer => ({ node, name: `h-${node}`, writers, claiming })
  t.is(claimVerdict('n2', [a('n1', 0, false), a('n3', 0, true)]), null, 'n3 gave way when n2 asked')
  t.is(claimVerdict('n2', [a('n1', 0, true)]), 'h-n1, which began writing it at the same moment')
  t.is(claimVerdict('n2', [a('n3', 2, false)]), '2 client(s) on h-n3')
})

test('a plain session is refused while a VM\'s disk session on this node is open; a claim beside a writer here does not give way', async t => {
  const ws = new Writers(60_000, async () => null)
  const vmDisk = ws.handle('vol-aaaaaaaaaaaa', device())
  const plain = ws.handle('vol-aaaaaaaaaaaa', device(), { exclusive: true })
  await t.throwsAsync(plain.write(0, new Uint8Array(512), false), { message: /is a running VM's disk on this node/ })
  ws.release(vmDisk)
  await plain.write(0, new Uint8Array(512), false)
  // a second session here writes beside the writer here, without asking (a
  // multi-connection client), and a smaller node asking meanwhile is refused by both
  let release: () => void = () => {}
  let asked = 0
  const slow = new Writers(60_000, async () => { asked++; await new Promise<void>(resolve => { release = resolve }); return null })
  const first = slow.handle('vol-bbbbbbbbbbbb', device(), { exclusive: true })
  const w1 = first.write(0, new Uint8Array(512), false)
  // a sibling that starts while the first still asks waits for its answer
  const second = slow.handle('vol-bbbbbbbbbbbb', device(), { exclusive: true })
  const w2 = second.write(0, new Uint8Array(512), false)
  await new Promise(resolve => setTimeout(resolve, 5))
  t.like(slow.answerClaim('vol-bbbbbbbbbbbb', 'h9', false), { claiming: true })
  release()
  await w1
  await t.notThrowsAsync(w2)
  t.is(asked, 1, 'one claim for the node')
  t.like(slow.answerClaim('vol-bbbbbbbbbbbb', 'h0', true), { writers: 2, claiming: false })
})

test('a claim whose asking failed leaves the session no writer: the next write asks again', async t => {
  let fail = true
  let asked = 0
  const ws = new Writers(60_000, async () => { asked++; if (fail) throw new Error('n-b did not say whether a client writes the volume there'); return null })
  const dev = device()
  const h = ws.handle('vol-aaaaaaaaaaaa', dev, { exclusive: true })
  await t.throwsAsync(h.write(0, new Uint8Array(512), false), { message: /did not say/ })
  t.is(dev.writes, 0)
  t.is(ws.count('vol-aaaaaaaaaaaa'), 0, 'not counted as a writer')
  fail = false
  await h.write(0, new Uint8Array(512), false)
  t.is(asked, 2, 'asked again, not taken as claimed')
  t.is(dev.writes, 1)
})

test('a stall of the event loop ends a plain session\'s claim: the next write asks again (the others may have found this node dead and let a writer in)', async t => {
  let asked = 0
  let elsewhere: string | null = null
  const ws = new Writers(60_000, async () => { asked++; return elsewhere }, undefined, { stallMs: 300 })
  t.teardown(() => { ws.close() })
  const dev = device()
  const h = ws.handle('vol-aaaaaaaaaaaa', dev, { exclusive: true })
  await h.write(0, new Uint8Array(512), false)
  await h.write(0, new Uint8Array(512), false)
  t.is(asked, 1, 'one claim per busy spell')
  // the loop stalls (an agent stopped): meanwhile another node's client took the volume
  const until = performance.now() + 400
  while (performance.now() < until) { /* a stalled event loop */ }
  elsewhere = '1 client(s) on h2'
  await t.throwsAsync(h.write(0, new Uint8Array(512), false), { message: /is being written on another node \(1 client\(s\) on h2\)/ })
  t.is(asked, 2)
  t.is(dev.writes, 2, 'no write beside the other node\'s')
})

test('with claim epochs: the claim that wins takes an epoch and fences it before the first write, which goes to the device at that epoch; siblings share it', async t => {
  const fenced: number[] = []
  // the volume's epoch in the document, as GvsService.claimEpoch keeps it
  let doc = 1
  let next = 10
  let failFence = false
  const holder: { ws?: Writers } = {}
  const epochs = {
    next: async (_v: string, held?: number) => {
      if (held != null && doc !== held) return { since: doc }
      doc = next
      return { epoch: next }
    },
    fence: async (_v: string, e: number) => {
      // the fence reaches this node too: it does not end the claim it is made for
      holder.ws!.revokeClaims('vol-aaaaaaaaaaaa', e)
      if (failFence) throw new Error('could not fence node x')
      fenced.push(e)
    }
  }
  const ws = holder.ws = new Writers(60_000, async () => null, undefined, { epochs })
  const plainDev = device()
  // each session's device at its claim's epoch
  const claimedDevs: Array<ReturnType<typeof device>> = []
  const claimed = (): BlockDevice => {
    const d = device()
    claimedDevs.push(d)
    return d
  }
  const a = ws.handle('vol-aaaaaaaaaaaa', plainDev, { exclusive: true, claimed })
  const b = ws.handle('vol-aaaaaaaaaaaa', plainDev, { exclusive: true, claimed })
  await Promise.all([a.write(0, new Uint8Array(512), false), b.write(512, new Uint8Array(512), false)])
  t.deepEqual(fenced, [10], 'one claim and one fence for the node')
  t.is(a.claimEpoch, 10)
  t.is(b.claimEpoch, 10)
  t.is(plainDev.writes, 0, 'nothing written at the epoch the sessions opened with')
  t.is(ws.count('vol-aaaaaaaaaaaa'), 2, 'the own fence ended neither claim')
  // a stall ends the claims; nobody else wrote: the next write claims again, at the same epoch
  for (const h of [a, b]) h.lastWriteAt = 0
  await a.write(0, new Uint8Array(512), false)
  t.is(a.claimEpoch, 10)
  t.is(a.fencedOut, null)
  // another writer's fence (a VM's holder, at 11) ends both claims, and the sessions for good:
  // what they still send (queued while their node stalled) would land over that writer's
  ws.revokeClaims('vol-aaaaaaaaaaaa', 11)
  doc = 11
  const written = claimedDevs.reduce((n, d) => n + d.writes, 0)
  t.is(written, 3)
  for (const h of [a, b]) {
    await t.throwsAsync(h.write(0, new Uint8Array(512), false), { message: /was taken over by another writer \(its writer epoch went from 10, this session's, to 11\).*connect again to write/ })
  }
  await t.throwsAsync(a.write(0, new Uint8Array(512), false), { message: /taken over by another writer/ }, 'and stays so')
  t.is(claimedDevs.reduce((n, d) => n + d.writes, 0), written, 'the fenced sessions wrote nothing')
  // a new session claims past it; its claim's fence fails at first: no writer, nothing written
  next = 12
  failFence = true
  const c = ws.handle('vol-aaaaaaaaaaaa', plainDev, { exclusive: true, claimed })
  await t.throwsAsync(c.write(0, new Uint8Array(512), false), { message: /could not fence/ })
  t.is(ws.count('vol-aaaaaaaaaaaa'), 0)
  t.is(claimedDevs.reduce((n, d) => n + d.writes, 0), written, 'the write whose claim failed wrote nothing')
  failFence = false
  await c.write(0, new Uint8Array(512), false)
  t.is(c.claimEpoch, 12)
  t.deepEqual(fenced, [10, 10, 12], 'a claim again after a stall fences its epoch again')
})
