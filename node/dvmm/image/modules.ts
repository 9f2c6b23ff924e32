// Which kernel modules the guest needs, in load order, from the kernel's modules.dep.
// Pure over the file's text; decompression of .ko.xz/.ko.zst/.ko.gz is the builder's.

/** Parses modules.dep: module path -> its dependencies' paths (pure). */
export function parseModulesDep (text: string): Map<string, string[]> {
  const deps = new Map<string, string[]>()
  for (const line of text.split('\n')) {
    const i = line.indexOf(':')
    if (i <= 0) continue
    deps.set(line.slice(0, i).trim(), line.slice(i + 1).trim().split(/\s+/).filter(s => s !== ''))
  }
  return deps
}

/** A module's name from its path: kernel/drivers/net/virtio_net.ko.xz -> virtio_net. */
export const moduleName = (path: string): string => (path.split('/').pop() ?? path).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_')

/**
 * The modules to load for `wanted`, dependencies first, each once. A wanted module
 * that is built into the kernel (`builtin`) needs nothing; one that is neither is an error.
 */
export function loadOrder (deps: Map<string, string[]>, wanted: string[], builtin: Set<string> = new Set()): { order: string[], builtin: string[] } {
  const byName = new Map([...deps.keys()].map(p => [moduleName(p), p]))
  const order: string[] = []
  const seen = new Set<string>()
  const inBuilt: string[] = []
  const visit = (path: string, chain: string[]): void => {
    if (seen.has(path)) return
    if (chain.includes(path)) throw new Error(`modules.dep has a cycle: ${[...chain, path].join(' -> ')}`)
    for (const d of deps.get(path) ?? []) visit(d, [...chain, path])
    seen.add(path)
    order.push(path)
  }
  for (const w of wanted) {
    const path = byName.get(w.replace(/-/g, '_'))
    if (path !== undefined) visit(path, [])
    else if (builtin.has(w.replace(/-/g, '_'))) inBuilt.push(w)
    else throw new Error(`kernel module ${w} is neither in modules.dep nor built in`)
  }
  return { order, builtin: inBuilt }
}

/** Built-in module names from modules.builtin (pure). */
export const parseBuiltin = (text: string): Set<string> => new Set(text.split('\n').filter(l => l !== '').map(moduleName))
