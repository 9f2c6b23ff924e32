// Fails when the source tree has an import cycle (the test command runs it). Reads
// every .ts file's static and dynamic imports of relative paths, type-only ones
// included (a type cycle still ties two modules together), and reports each cycle
// found by Tarjan's strongly connected components.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'

const ROOTS = ['protocol', 'crdt', 'node', 'test', 'bench', 'scripts']
const IMPORT = /(?:^|[\s;])(?:import|export)\s[^'"`;]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|import\s*\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)|(?:^|[\s;])import\s*['"](\.{1,2}\/[^'"]+)['"]/g

function files (dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...files(p))
    else if (p.endsWith('.ts')) out.push(p)
  }
  return out
}

/** the relative imports of one module's source, as absolute paths */
export function importsOf (path: string, source: string): string[] {
  const deps: string[] = []
  // comments may show example imports: leave them out
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '')
  for (const m of code.matchAll(IMPORT)) deps.push(resolve(dirname(path), (m[1] ?? m[2] ?? m[3])!))
  return deps
}

/** every cycle (a strongly connected component of more than one module, or a self-import) */
export function cycles (graph: Map<string, string[]>): string[][] {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const on = new Set<string>()
  const found: string[][] = []
  const visit = (v: string): void => {
    index.set(v, next); low.set(v, next); next++
    stack.push(v); on.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue
      if (!index.has(w)) { visit(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)) } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!))
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = []
      let w: string
      do { w = stack.pop()!; on.delete(w); scc.push(w) } while (w !== v)
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(scc.reverse())
    }
  }
  for (const v of graph.keys()) if (!index.has(v)) visit(v)
  return found
}

if (import.meta.main) {
  const root = resolve(dirname(new URL(import.meta.url).pathname), '..')
  const graph = new Map<string, string[]>()
  for (const r of ROOTS) {
    let all: string[]
    try { all = files(join(root, r)) } catch { continue }
    for (const f of all) graph.set(f, importsOf(f, readFileSync(f, 'utf8')))
  }
  const found = cycles(graph)
  for (const c of found) process.stderr.write(`import cycle: ${c.map(f => relative(root, f)).join(' -> ')} -> ${relative(root, c[0]!)}\n`)
  if (found.length > 0) process.exit(1)
  process.stdout.write(`no import cycle among ${graph.size} modules\n`)
}
