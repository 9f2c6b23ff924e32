// The names NBD clients open volumes by: a volume's path without the leading "/", and
// a VM's disk pinned to its writer epoch with its key (exports.ts, pin-keys.ts).

/**
 * NAME~EPOCH~KEY: a volume's export pinned to a writer epoch, with its key (pin-keys.ts;
 * volume paths have no "~"). A key of any form is taken as one: a wrong one, or one that
 * is no hex, opens a plain session, which is refused while a VM uses the volume.
 */
export const PINNED = /^([^~]+)~([0-9]{1,16})(?:~([^~]{1,128}))?$/
/**
 * An export name as logs and health may show it: a pinned one without its key (bb29:
 * the health message every local user reads showed it, and with it a client of the NBD
 * socket opened the VM's disk as the VM's own writer)
 */
export function exportLabel (name: string | null): string | null {
  const m = name == null ? null : PINNED.exec(name)
  return m == null ? name : `${m[1]!}~${m[2]!}`
}

/** the volume an export name opens (its path without the leading "/"; a pinned one's epoch and key left out) */
export const exportVolume = (name: string): string => PINNED.exec(name)?.[1] ?? name

/** the export name of a volume pinned to a writer epoch, with its key (none: exports that ask none, tests) */
export const pinnedName = (name: string, epoch: number, key?: string): string => key == null ? `${name}~${epoch}` : `${name}~${epoch}~${key}`
