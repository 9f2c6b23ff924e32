// The machine's groups, as /etc/group names them: the vgrid group's members may change
// the grid (its API and NBD sockets are the group's).
import { readFileSync } from 'node:fs'

/** gid of a group in /etc/group, or null (no such group, no file) */
export function groupId (name: string, read: () => string = () => readFileSync('/etc/group', 'utf8')): number | null {
  try {
    const line = read().split('\n').find(l => l.split(':')[0] === name)
    const gid = Number(line?.split(':')[2])
    return line != null && Number.isInteger(gid) ? gid : null
  } catch { return null }
}
