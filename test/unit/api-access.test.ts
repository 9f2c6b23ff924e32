// The pure parts of the API's access check: reading the kernel's socket table,
// matching a connection to its user, who counts as an admin, and what a refusal says.
import test from 'ava'
import { SocketTableCache, decodeProcAddr, denial, parseProcNetTcp, tokenMatches, uidIsAdmin, uidOfClient } from '../../node/api/access.ts'

// two lines as the kernel prints them: a client 127.0.0.1:40000 (uid 1000) connected to 127.0.0.1:7401, and the server's end (uid 0)
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:9C40 0100007F:1CE9 01 00000000:00000000 00:00000000 00000000  1000        0 123 1 0000000000000000 20 4 30 10 -1
   1: 0100007F:1CE9 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 124 1 0000000000000000 20 4 30 10 -1
`
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:9C41 0000000000000000FFFF00000100007F:1CE9 01 00000000:00000000 00:00000000 00000000   33        0 125 1
   1: 00000000000000000000000001000000:9C42 00000000000000000000000001000000:1CE9 01 00000000:00000000 00:00000000 00000000   34        0 126 1
`

test('addresses in the kernel socket table decode, IPv4, IPv4-mapped and IPv6', t => {
  t.deepEqual(decodeProcAddr('0100007F:1CE9'), { address: '127.0.0.1', port: 7401 })
  t.deepEqual(decodeProcAddr('0000000000000000FFFF00000100007F:9C41'), { address: '127.0.0.1', port: 40001 })
  t.deepEqual(decodeProcAddr('00000000000000000000000001000000:9C42'), { address: '::1', port: 40002 })
  for (const bad of ['', 'zz:1', '0100007F', '0100007F:1', '0100:1CE9']) t.is(decodeProcAddr(bad), null, bad)
})

test('a connection is matched to the user owning its client end, not the server end', t => {
  const entries = [...parseProcNetTcp(TCP), ...parseProcNetTcp(TCP6)]
  t.is(entries.length, 4)
  const server = { address: '127.0.0.1', port: 7401 }
  t.is(uidOfClient(entries, { address: '127.0.0.1', port: 40000 }, server), 1000)
  t.is(uidOfClient(entries, { address: '::ffff:127.0.0.1', port: 40001 }, { address: '::ffff:127.0.0.1', port: 7401 }), 33)
  t.is(uidOfClient(entries, { address: '::1', port: 40002 }, { address: '::1', port: 7401 }), 34)
  t.is(uidOfClient(entries, { address: '127.0.0.1', port: 40009 }, server), null)
})

test('the socket table is read once for every connection accepted before the read, and again, shared, for those accepted since', async t => {
  let now = 100
  let reads = 0
  const cache = new SocketTableCache(() => { reads++; return [...parseProcNetTcp(TCP), ...parseProcNetTcp(TCP6)] }, () => now, 0)
  const server = { address: '127.0.0.1', port: 7401 }
  // a burst: three connections accepted at 50-90, asking at once: one read
  t.deepEqual(await Promise.all([
    cache.uidOfClient({ address: '127.0.0.1', port: 40000 }, server, 50),
    cache.uidOfClient({ address: '::1', port: 40002 }, { address: '::1', port: 7401 }, 80),
    cache.uidOfClient({ address: '::ffff:127.0.0.1', port: 40001 }, { address: '127.0.0.1', port: 7401 }, 90)
  ]), [1000, 34, 33])
  t.is(reads, 1)
  t.is(await cache.uidOfClient({ address: '127.0.0.1', port: 40000 }, server, 60), 1000, 'accepted before the read: no new read')
  t.is(reads, 1)
  now = 200
  t.is(await cache.uidOfClient({ address: '127.0.0.1', port: 40009 }, server, 150), null, 'accepted after the read: read again, and not there')
  t.is(reads, 2)
})

test('admins are root and members of the vgrid group, by primary group or by the member list', t => {
  const files = {
    passwd: 'root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:990::/home/bob:/bin/sh\ncarol:x:1002:1002::/:/bin/sh\n',
    group: 'root:x:0:\nalice:x:1000:\nvgrid:x:990:alice\ncarol:x:1002:\n'
  }
  t.true(uidIsAdmin(0, files))
  t.true(uidIsAdmin(1000, files), 'listed member')
  t.true(uidIsAdmin(1001, files), 'primary group')
  t.false(uidIsAdmin(1002, files))
  t.false(uidIsAdmin(4242, files), 'unknown uid')
  t.false(uidIsAdmin(1000, { ...files, group: 'root:x:0:\n' }), 'no vgrid group')
})

test('a refusal names what is missing; the socket, an admin uid or the token let a caller in', t => {
  const admin = (uid: number): boolean => uid === 0
  t.is(denial({ via: 'unix' }, false, admin), null)
  t.is(denial({ via: 'tcp', uid: 0, loopback: true }, false, admin), null)
  t.is(denial({ via: 'tcp', uid: null, loopback: false }, true, admin), null)
  t.regex(denial({ via: 'tcp', uid: 1000, loopback: true }, false, admin)!, /user uid 1000 is neither root nor in the "vgrid" group.*api\.token/)
  t.regex(denial({ via: 'tcp', uid: 65534, loopback: true }, false, admin, uid => uid === 65534 ? 'nobody' : undefined)!, /^user nobody \(uid 65534\) is neither root/)
  t.regex(denial({ via: 'tcp', uid: null, loopback: false }, false, admin)!, /user is unknown.*API token/)
  t.true(tokenMatches('Bearer abc', 'abc'))
  t.true(tokenMatches('bearer   abc ', 'abc'))
  for (const bad of [undefined, '', 'abc', 'Bearer ab', 'Bearer abcd', 'Basic abc']) t.false(tokenMatches(bad, 'abc'), String(bad))
})
