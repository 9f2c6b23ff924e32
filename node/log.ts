// A small structured logger: one line per event, "time level component message k=v".
export type Level = 'debug' | 'info' | 'warn' | 'error'
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 }

export interface Logger {
  debug: (msg: string, fields?: Record<string, unknown>) => void
  info: (msg: string, fields?: Record<string, unknown>) => void
  warn: (msg: string, fields?: Record<string, unknown>) => void
  error: (msg: string, fields?: Record<string, unknown>) => void
  child: (component: string) => Logger
}

function fmt (v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v)
  return /[\s"=]/.test(s) ? JSON.stringify(s) : s
}

export function createLogger (opts: { component?: string, level?: Level, write?: (line: string) => void } = {}): Logger {
  const min = ORDER[opts.level ?? (process.env.VGRID_LOG_LEVEL as Level | undefined) ?? 'info'] ?? ORDER.info
  const write = opts.write ?? ((line: string) => { process.stderr.write(line + '\n') })
  const component = opts.component ?? 'agent'
  const at = (level: Level) => (msg: string, fields?: Record<string, unknown>): void => {
    if (ORDER[level] < min) return
    const kv = fields == null ? '' : Object.entries(fields).map(([k, v]) => ` ${k}=${fmt(v)}`).join('')
    write(`${new Date().toISOString()} ${level.toUpperCase()} ${component}: ${msg}${kv}`)
  }
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (c: string) => createLogger({ ...opts, component: `${component}/${c}` })
  }
}

export const silentLogger: Logger = createLogger({ write: () => {} })
