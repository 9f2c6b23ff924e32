// Progress of a long copy in the CLI, on stderr: a bar (cli-progress) when stderr is a
// terminal, otherwise plain lines, one per 10 % step (and the last), which logs keep
// readable; the result's line on stdout (bb50: a script reading stdout got the progress
// lines mixed into it). `qemuImgPercent` reads qemu-img's own -p output ("    (45.00/100%)\r").
import cliProgress from 'cli-progress'

export interface Progress {
  /** value out of total; total may grow (a repair learns its work as it goes) */
  update: (value: number, total: number, note?: string) => void
  stop: (final?: string) => void
}

export interface ProgressOptions {
  tty?: boolean
  /** where the progress goes (stderr) */
  out?: NodeJS.WritableStream & { write: (s: string) => boolean }
  /** where `stop`'s final line goes (stdout) */
  result?: { write: (s: string) => boolean }
  /** how a value prints beside the percentage ("12/40 objects"); none: the percentage alone */
  format?: (value: number, total: number) => string
}

export function progress (label: string, opts: ProgressOptions = {}): Progress {
  const out = opts.out ?? process.stderr
  const result = opts.result ?? process.stdout
  const tty = opts.tty ?? process.stderr.isTTY === true
  const fmt = opts.format
  if (tty) {
    const bar = new cliProgress.SingleBar({
      format: `${label} [{bar}] {percentage}%${fmt == null ? '' : ' | {shown}'} {note}`,
      stream: out,
      hideCursor: true,
      clearOnComplete: false,
      barsize: 30
    }, cliProgress.Presets.shades_classic)
    let started = false
    return {
      update: (value, total, note = '') => {
        const t = Math.max(total, 1)
        const shown = fmt?.(value, total) ?? ''
        if (!started) { bar.start(t, value, { shown, note }); started = true }
        bar.setTotal(t)
        bar.update(value, { shown, note })
      },
      stop: final => {
        if (started) bar.stop()
        if (final != null) result.write(final + '\n')
      }
    }
  }
  let lastStep = -1
  return {
    update: (value, total, note = '') => {
      const step = total > 0 ? Math.floor(value / total * 10) : 0
      if (step === lastStep) return
      lastStep = step
      out.write(`${label}: ${total > 0 ? Math.floor(value / total * 100) : 0}%${fmt == null ? '' : ` (${fmt(value, total)})`}${note === '' ? '' : `, ${note}`}\n`)
    },
    stop: final => { if (final != null) result.write(final + '\n') }
  }
}

/** the last percentage in a chunk of qemu-img -p output, or null */
export function qemuImgPercent (chunk: string): number | null {
  let last: number | null = null
  for (const m of chunk.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)) last = Number(m[1])
  return last
}
