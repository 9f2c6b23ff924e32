// Text output for people: tables and human sizes. `--json` bypasses all of this.
export function bytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`
}

/** a number as people write it: 1, 0.5, 1.33 (at most two places, no trailing zeros: bb38 read 0.50/2 beside 1/2) */
export function num (n: number): string {
  return Number.isInteger(n) ? String(n) : String(Number(n.toFixed(2)))
}

export function table (headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  return [line(headers), ...rows.map(line)].join('\n')
}

export function shortId (id: string): string {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id
}

/**
 * Labels as `k=v,k2=v2`, sorted; a value holding the list's own separators (or none) is
 * quoted: `k="a,zone=b"` read as two labels (bb20). Empty when there are none.
 */
export const sayLabels = (labels: Record<string, string>): string =>
  Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${/[,=\s"]/.test(v) || v === '' ? JSON.stringify(v) : v}`).join(',')
