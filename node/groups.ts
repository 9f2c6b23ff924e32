// The machine's groups, as NSS names them (`getent group`: /etc/group, and LDAP or the
// like where configured; rv48: a vgrid group from a directory was not seen): the vgrid
// group's members may change the grid (its API and NBD sockets are the group's).
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

/** the group's line as `getent group` prints it, else the whole of /etc/group (no getent) */
function groupLines (name: string): string {
  try {
    return execFileSync('getent', ['group', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 })
  } catch (err) {
    // exit 2: no such group; any other failure (no getent, a directory that does not answer): the file
    if ((err as { status?: unknown }).status === 2) return ''
    return readFileSync('/etc/group', 'utf8')
  }
}

/** gid of a group, or null (no such group, nothing to read) */
export function groupId (name: string, read: () => string = () => groupLines(name)): number | null {
  try {
    const line = read().split('\n').find(l => l.split(':')[0] === name)
    const gid = Number(line?.split(':')[2])
    return line != null && line.split(':')[2] !== '' && Number.isInteger(gid) ? gid : null
  } catch { return null }
}
