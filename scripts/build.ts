// Builds what bin/vgrid runs, in two steps, so that an agent's memory goes to its work
// rather than to code it never runs:
// 1. strips the TypeScript types out of the runtime sources (node/, protocol/, crdt/)
//    into dist/ with Node's own stripper, so no agent loads the type stripper (about
//    17 MiB). Types become blanks: lines and columns stay where they were.
// 2. bundles the CLI (dist/node/cli/main.js and all it imports) into dist/vgrid.mjs
//    with esbuild: one module instead of about 1,300, without comments or unused code.
//    An idle agent measured 97 MiB instead of 115-118 MiB (module records and source
//    text). Identifiers keep their names, so stack traces still name the functions.
// bin/vgrid runs dist/ only while it is newer than every source; otherwise the .ts.
// Runs as `npm run build` and on `npm ci` (prepare).
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import * as nodeModule from 'node:module'
import { dirname, join, relative } from 'node:path'

const ROOT = join(import.meta.dirname, '..')
const SOURCES = ['node', 'protocol', 'crdt']
const OUT = join(ROOT, 'dist')

type Strip = (code: string, opts: { mode: 'strip' }) => string
const strip = (nodeModule as { stripTypeScriptTypes?: Strip }).stripTypeScriptTypes

/** `./x.ts` → `./x.js` in static and dynamic relative imports (same length, same columns). */
export function rewriteImports (code: string): string {
  return code.replace(/(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(\.{1,2}\/[^'"\n]+)\.ts\2/g, '$1$2$3.js$2')
}

async function * tsFiles (dir: string): AsyncGenerator<string> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) yield * tsFiles(p)
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') && !e.name.endsWith('.tmp.ts')) yield p
  }
}

// Left to Node's resolver: Automerge loads its .wasm file next to its own module, and
// xsalsa20 is patched in place (protocol/patches/xsalsa20-detached-memory.ts), so
// @libp2p/pnet must load the very copy the patch resolves.
const EXTERNAL = ['@automerge/automerge', 'xsalsa20']

/** Bundles dist/node/cli/main.js into dir/vgrid.mjs; false when esbuild is missing. */
async function bundle (dir: string): Promise<boolean> {
  let esbuild: typeof import('esbuild')
  try {
    esbuild = await import('esbuild')
  } catch {
    return false
  }
  await esbuild.build({
    entryPoints: [join(dir, 'node/cli/main.js')],
    outfile: join(dir, 'vgrid.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    external: EXTERNAL,
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    logLevel: 'error',
    // CommonJS dependencies call require(); an ES module has none of its own
    banner: { js: "import { createRequire as __vgridRequire } from 'node:module'; const require = __vgridRequire(import.meta.url);" }
  })
  return true
}

async function build (): Promise<{ files: number, bundled: boolean }> {
  const tmp = `${OUT}.tmp-${process.pid}`
  await rm(tmp, { recursive: true, force: true })
  await mkdir(tmp, { recursive: true })
  // the stamp is older than every read below: a source saved during the build is newer
  await writeFile(join(tmp, '.built'), new Date().toISOString() + '\n')
  let n = 0
  for (const top of SOURCES) {
    for await (const file of tsFiles(join(ROOT, top))) {
      const out = join(tmp, relative(ROOT, file)).replace(/\.ts$/, '.js')
      await mkdir(dirname(out), { recursive: true })
      await writeFile(out, rewriteImports(strip!(await readFile(file, 'utf8'), { mode: 'strip' })))
      n++
    }
  }
  const bundled = await bundle(tmp)
  await rm(OUT, { recursive: true, force: true })
  await rename(tmp, OUT)
  return { files: n, bundled }
}

if (import.meta.main) {
  if (strip == null) {
    // an older Node: bin/vgrid keeps running the .ts sources
    console.error(`vgrid build: Node ${process.version} cannot strip types; skipped (the .ts sources run as they are)`)
  } else {
    const { files, bundled } = await build()
    const out = relative(process.cwd(), OUT) || OUT
    console.error(`vgrid build: ${files} files → ${out}; ${bundled ? `bundle → ${join(out, 'vgrid.mjs')}` : 'no bundle (esbuild is not installed)'}`)
  }
}
