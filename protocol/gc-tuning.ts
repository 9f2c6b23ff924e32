// How V8 collects a process whose memory is mostly short-lived byte buffers: every
// byte a stream carries is held by a few of them (the socket read, pnet's and Noise's
// plaintext, a payload). V8 counts buffer memory apart from its heap and starts a full
// mark-compact each time 64 MiB more of it was allocated since the last one, however
// small the heap: a replica agent moving 40 MB/s ran five a second, and its GC threads
// took a quarter of all CPU (perf, bench/gvs-repl.ts). Counted within the heap's global
// limit instead, buffers are collected as heap growth calls for it.
// Measured, alternated against the commit before: one stream (bench/stream.ts, 512 MiB
// each way, 3 rounds) 1.37x MB/s, CPU per byte 0.76x sending and 0.70x receiving;
// R=2 volume writes (bench/gvs-repl.ts) 1.15x, mark-compacts 42-49 -> 10-18 per 256 MiB
// run, an agent's peak RSS 240-275 -> 275-322 MB.
import { setFlagsFromString } from 'node:v8'

let tuned = false

/** Once per process, before the first stream: buffer memory counted in the global heap limit. */
export function tuneGcForStreams (): void {
  if (tuned) return
  tuned = true
  // the flag is read whenever V8 decides on a GC, so setting it at run time takes effect
  // (it is refused in NODE_OPTIONS; the launcher could pass it, but tests and benches
  // that build hosts in-process would then run without it)
  setFlagsFromString('--external-memory-accounted-in-global-limit')
}
