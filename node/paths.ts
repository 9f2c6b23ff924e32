// Where the package lives. The code runs from its .ts sources, from the stripped copy
// under dist/ (one folder deeper), or from the bundle dist/vgrid.mjs (scripts/build.ts);
// paths that name files of the package go through here so all three work.
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
const CODE_EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js'

/**
 * A script of the package to run in a process of its own, given as its source path
 * (`node/netns/api-bridge-main`): the .ts source when this code runs from the sources,
 * otherwise its stripped copy under dist/ (the bundle has no per-file layout to follow).
 */
export function scriptPath (source: string): string {
  return CODE_EXT === '.ts' ? join(ROOT, `${source}.ts`) : join(ROOT, 'dist', `${source}.js`)
}
