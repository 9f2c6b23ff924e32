// Who a `process` VM's command runs as (its spec's `user`): a user of the node, looked
// up through NSS (`getent passwd`, so LDAP and the like count too), and the `setpriv`
// line that drops to it with no capabilities and no way to gain any (no-new-privs, an
// empty bounding set): such a command cannot leave its network namespace (setns needs
// CAP_SYS_ADMIN), change its addresses or routes, or read the node's root-only files.
import { execFile, execFileSync } from 'node:child_process'

export interface UserIds { uid: number, gid: number, name: string, home: string }

/** One line of passwd(5) as `getent passwd` prints it (pure); undefined when it is not one. */
export function parsePasswdLine (line: string): UserIds | undefined {
  const f = line.trim().split(':')
  if (f.length < 7) return undefined
  const uid = Number(f[2])
  const gid = Number(f[3])
  if (!Number.isSafeInteger(uid) || uid < 0 || !Number.isSafeInteger(gid) || gid < 0 || f[2] === '' || f[3] === '') return undefined
  return { uid, gid, name: f[0]!, home: f[5] === '' ? '/' : f[5]! }
}

/** The user `user` (a name or a numeric uid) on this node; a uid with no entry runs with its own number as gid. */
export function resolveUser (user: string): UserIds | undefined {
  try {
    const out = execFileSync('getent', ['passwd', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 })
    const u = parsePasswdLine(out.split('\n')[0] ?? '')
    if (u != null) return u
  } catch {}
  return numericUser(user)
}

/** a numeric uid with no passwd entry: it runs with its own number as gid */
const numericUser = (user: string): UserIds | undefined =>
  /^[0-9]{1,10}$/.test(user) && Number(user) <= 0xfffffffe ? { uid: Number(user), gid: Number(user), name: user, home: '/' } : undefined

/**
 * Whether `user` is a user of this node, without blocking the event loop (the API asks
 * it of every VM created with a user): `missing` only when `getent` says there is no
 * such entry (exit 2); `unknown` when it could not tell (not there, a slow directory).
 */
export async function userOnNode (user: string): Promise<'found' | 'missing' | 'unknown'> {
  if (numericUser(user) != null) return 'found'
  return await new Promise(resolve => {
    execFile('getent', ['passwd', user], { encoding: 'utf8', timeout: 5000 }, (err, out) => {
      if (err == null) resolve(parsePasswdLine(out.split('\n')[0] ?? '') != null ? 'found' : 'unknown')
      else resolve((err as { code?: unknown }).code === 2 ? 'missing' : 'unknown')
    })
  })
}

/** The command line that runs `argv` as `u`, without capabilities (root: as it is). */
export function asUser (u: UserIds, argv: string[]): string[] {
  if (u.uid === 0) return argv
  return ['setpriv', `--reuid=${u.uid}`, `--regid=${u.gid}`, '--clear-groups', '--no-new-privs', '--inh-caps=-all', '--bounding-set=-all', '--', ...argv]
}
