// What every dependency patch uses to describe itself and to look for the library
// internals it relies on (see index.ts).
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export interface Patch {
  /** the symptom it fixes, in a few words */
  readonly name: string
  /** the package whose internals it changes */
  readonly package: string
  /** the installed version of that package */
  version: () => string
  /** what is missing from the internals the patch relies on, or null if all is there */
  check: () => string | null
  /** applies the patch (once; later calls do nothing) */
  install: () => void
}

/**
 * The version of an installed package, found from its entry point (`resolved`, a file
 * URL or path) by walking up to the package.json that names it. Packages that export
 * no ./package.json cannot be asked directly.
 */
export function packageVersion (name: string, resolved: string): string {
  let dir = dirname(resolved.startsWith('file:') ? fileURLToPath(resolved) : resolved)
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown, version?: unknown }
      if (pkg.name === name && typeof pkg.version === 'string') return pkg.version
    } catch { /* no package.json here: go up */ }
    const up = dirname(dir)
    if (up === dir) return 'unknown'
    dir = up
  }
}

/** What `obj` lacks of the named methods (functions on it or its prototype chain). */
export function missingMethods (what: string, obj: unknown, names: readonly string[]): string | null {
  if (obj == null || (typeof obj !== 'object' && typeof obj !== 'function')) return `${what} is not there`
  const gone = names.filter(n => typeof (obj as Record<string, unknown>)[n] !== 'function')
  return gone.length === 0 ? null : `${what} has no ${gone.map(n => n + '()').join(', ')}`
}

/** What a function's source does not mention of the fields a patch reads (a renamed field). */
export function missingFields (what: string, fn: unknown, fields: readonly string[]): string | null {
  if (typeof fn !== 'function') return `${what} is not a function`
  // a function's source text is what we look at
  const src = String(fn)
  const gone = fields.filter(f => !new RegExp(`\\.${f}\\b`).test(src))
  return gone.length === 0 ? null : `${what} no longer uses ${gone.join(', ')}`
}
