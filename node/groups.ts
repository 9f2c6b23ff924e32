// The machine's groups, as NSS names them (`getent group`: /etc/group, and LDAP or the
// like where configured; rv48: a vgrid group from a directory was not seen): the vgrid
// group's members may change the grid (its API and NBD sockets are the group's).
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

/** the group's line as `getent group` prints it, else the whole of /etc/group (no getent); `sure`: getent answered */
function groupLines (name: string): { text: string, sure: boolean } {
  try {
    return { text: execFileSync('getent', ['group', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }), sure: true }
  } catch (err) {
    // exit 2: no such group; any other failure (no getent, a directory that does not answer): the file
    if ((err as { status?: unknown }).status === 2) return { text: '', sure: true }
    return { text: readFileSync('/etc/group', 'utf8'), sure: false }
  }
}

/** the groups looked up through NSS, for a minute: a directory that hangs must not hold the agent's loop at every VM start (rv49) */
const known = new Map<string, { gid: number | null, at: number }>()
const KEEP_MS = 60_000

/** gid of a group, or null (no such group, nothing to read); `read` given: looked up now, not kept */
export function groupId (name: string, read?: () => string): number | null {
  const kept = read == null ? known.get(name) : undefined
  if (kept != null && Date.now() - kept.at < KEEP_MS) return kept.gid
  let gid: number | null = null
  // kept only what getent answered: a directory that timed out is asked again next time (rv50)
  let sure = false
  try {
    const got = read != null ? { text: read(), sure: false } : groupLines(name)
    sure = got.sure
    const line = got.text.split('\n').find(l => l.split(':')[0] === name)
    const n = Number(line?.split(':')[2])
    gid = line != null && line.split(':')[2] !== '' && Number.isInteger(n) ? n : null
  } catch {}
  if (read == null && sure) known.set(name, { gid, at: Date.now() })
  return gid
}
