// Strips the TypeScript types out of the runtime sources (node/, protocol/, crdt/) into
// dist/, with Node's own stripper, so that an agent does not load the type stripper
// (about 17 MiB of an idle agent's memory). Types become blanks, so every line and
// column stays where it was in the .ts file and stack traces need no source map.
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

async function build (): Promise<number> {
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
  await rm(OUT, { recursive: true, force: true })
  await rename(tmp, OUT)
  return n
}

if (import.meta.main) {
  if (strip == null) {
    // an older Node: bin/vgrid keeps running the .ts sources
    console.error(`vgrid build: Node ${process.version} cannot strip types; skipped (the .ts sources run as they are)`)
  } else {
    const n = await build()
    console.error(`vgrid build: ${n} files → ${relative(process.cwd(), OUT) || OUT}`)
  }
}
