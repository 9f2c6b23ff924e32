// Progress of a long copy in the CLI: a bar (cli-progress) when stdout is a terminal,
// otherwise plain lines, one per 10 % step (and the last), which logs and pipes keep
// readable. `qemuImgPercent` reads qemu-img's own -p output ("    (45.00/100%)\r").
import cliProgress from 'cli-progress'

export interface Progress {
  /** value out of total; total may grow (a repair learns its work as it goes) */
  update: (value: number, total: number, note?: string) => void
  stop: (final?: string) => void
}

export interface ProgressOptions {
  tty?: boolean
  out?: NodeJS.WritableStream & { write: (s: string) => boolean }
  /** how a value prints beside the percentage ("12/40 objects"); none: the percentage alone */
  format?: (value: number, total: number) => string
}

export function progress (label: string, opts: ProgressOptions = {}): Progress {
  const out = opts.out ?? process.stdout
  const tty = opts.tty ?? process.stdout.isTTY === true
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
        if (final != null) out.write(final + '\n')
      }
    }
  }
  let lastStep = -1
  let lastLine = ''
  return {
    update: (value, total, note = '') => {
      const step = total > 0 ? Math.floor(value / total * 10) : 0
      if (step === lastStep) return
      lastStep = step
      lastLine = `${label}: ${total > 0 ? Math.floor(value / total * 100) : 0}%${fmt == null ? '' : ` (${fmt(value, total)})`}${note === '' ? '' : `, ${note}`}`
      out.write(lastLine + '\n')
    },
    stop: final => { if (final != null && final !== lastLine) out.write(final + '\n') }
  }
}

/** the last percentage in a chunk of qemu-img -p output, or null */
export function qemuImgPercent (chunk: string): number | null {
  let last: number | null = null
  for (const m of chunk.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)) last = Number(m[1])
  return last
}
