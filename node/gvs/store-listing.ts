// What the object store (object-store.ts) lists: a volume's object files and, page by
// page, their versions.
import { readdir } from 'node:fs/promises'
import { fromFsError } from './errors.ts'
import type { Version } from './versions.ts'

/** indexes of the objects present in a volume's directory, in order (none if it is absent) */
export async function objectIndexes (volDir: string, volume: string): Promise<number[]> {
  let names: string[]
  try { names = await readdir(volDir) } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw fromFsError(err, `listing "${volume}"`)
  }
  return names.filter(n => /^[0-9a-f]{8}$/.test(n)).map(n => parseInt(n, 16)).sort((a, b) => a - b)
}

/**
 * Each of `indexes` with its version (`versionOf`: null when the object went meanwhile);
 * with `page`, only the first `limit` from index `from` on, so a paged list reads the
 * versions of its page, not of the whole volume.
 */
export async function inventoryOf (indexes: number[], page: { from: number, limit: number } | undefined, versionOf: (index: number) => Promise<Version | null>): Promise<Array<{ index: number, version: Version }>> {
  const out: Array<{ index: number, version: Version }> = []
  for (const index of indexes) {
    if (page != null && index < page.from) continue
    if (page != null && out.length >= page.limit) break
    const version = await versionOf(index)
    if (version != null) out.push({ index, version })
  }
  return out
}
