// Where the package lives. The code runs either from its .ts sources or from the
// stripped copy under dist/ (scripts/build.ts), one folder deeper; paths that name
// files of the package go through here so both work.
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'

function packageRoot (from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`)
  }
}

/** The package's root folder (bin/, node_modules/, package.json). */
export const ROOT = packageRoot(import.meta.dirname)

/** The extension of the running code's own modules: '.ts' from the sources, '.js' from dist/. */
export const CODE_EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js'
