// The CLI's client for the local agent's HTTP API. Every failure becomes a CliError
// with a one-line message; nothing here prints a stack trace.
import { DEFAULT_API, parseHostPort } from '../config.ts'

export class CliError extends Error {
  override name = 'CliError'
  readonly exitCode: number
  constructor (message: string, exitCode = 1) {
    super(message)
    this.exitCode = exitCode
  }
}

export class ApiClient {
  readonly base: string
  private readonly display: string
  constructor (api: string | undefined) {
    const raw = api ?? process.env.VGRID_API ?? DEFAULT_API
    let hp
    try {
      hp = parseHostPort(raw, '--api')
    } catch (err) {
      throw new CliError((err as Error).message, 2)
    }
    const host = hp.host.includes(':') ? `[${hp.host}]` : hp.host
    this.display = `${host}:${hp.port}`
    this.base = `http://${this.display}`
  }

  async request<T> (method: string, path: string, body?: unknown): Promise<T> {
    let res: Response
    try {
      res = await fetch(this.base + path, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(10_000)
      })
    } catch (err) {
      const c = (err as { cause?: { code?: string, message?: string } }).cause
      const cause = c?.code ?? c?.message ?? (err as Error).message
      throw new CliError(`cannot reach the vgrid agent at ${this.display} (${cause}); is it running? (set --api or VGRID_API)`)
    }
    const text = await res.text()
    let data: unknown
    try {
      data = text === '' ? undefined : JSON.parse(text)
    } catch {
      throw new CliError(`agent at ${this.display} answered ${res.status} with something that is not JSON`)
    }
    if (!res.ok) {
      const e = (data as { error?: { code?: string, message?: string } } | undefined)?.error
      throw new CliError(`${e?.message ?? `request failed with status ${res.status}`}${e?.code == null ? '' : ` (${e.code})`}`)
    }
    return data as T
  }

  get<T> (path: string): Promise<T> { return this.request<T>('GET', path) }
}
