// The dependency patches (one file per symptom) and the one call that installs them.
// Each patch reaches into a library's internals, which a routine update may rename or
// remove; a patch that then quietly did nothing would bring its symptom back unseen
// (a crashed agent, a CPU bill). So every patch first checks that what it relies on is
// still there, and the start fails, naming the patch, the package, its version and
// what is missing, rather than running without it. The packages are pinned to exact
// versions in package.json: an update is a deliberate change that runs these checks.
import type { Patch } from './probe.ts'
import * as xsalsa20Memory from './xsalsa20-detached-memory.ts'
import * as lengthPrefix from './length-prefix-empty-buffer.ts'
import * as yamuxWindow from './yamux-window-updates.ts'
import * as ed25519Import from './ed25519-key-import.ts'
import * as noiseSessionKey from './noise-session-key.ts'
import * as xsalsa20Simd from './xsalsa20-simd.ts'
import * as noiseDecryptCopy from './noise-decrypt-copy.ts'
import * as pnetSendCopy from './pnet-send-copy.ts'
import { findLiveClasses } from './live-classes.ts'

export type { Patch } from './probe.ts'

export class PatchError extends Error {
  readonly patch: string
  constructor (p: Pick<Patch, 'name' | 'package'>, version: string, missing: string) {
    super(`dependency patch "${p.name}" cannot be applied to ${p.package}@${version}: ${missing}. ` +
      `The package changed under the patch; pin the version it was written for in package.json, or update the patch (protocol/patches/)`)
    this.name = 'PatchError'
    this.patch = p.name
  }
}

export const PATCHES: readonly Patch[] = [xsalsa20Memory, lengthPrefix, yamuxWindow, ed25519Import, noiseSessionKey, xsalsa20Simd, noiseDecryptCopy, pnetSendCopy].map(m => m.patch)

/**
 * Checks every patch, then installs them all; throws a PatchError for the first one
 * whose internals are missing (nothing is installed then). Called by createHost, so
 * an agent never runs its network without them. It first makes the instances that
 * lead to the classes two patches change (live-classes.ts).
 */
export async function installPatches (patches: readonly Patch[] = PATCHES): Promise<void> {
  await findLiveClasses()
  for (const p of patches) {
    const missing = p.check()
    if (missing != null) throw new PatchError(p, versionOf(p), missing)
  }
  for (const p of patches) p.install()
}

/** The patched package's version for a message; never throws (a message must not fail). */
function versionOf (p: Patch): string {
  try {
    return p.version()
  } catch {
    return 'unknown'
  }
}
