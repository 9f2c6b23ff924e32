// An agent never announces an address in the VM link range, whatever interface it is on
// and however the interface list read races with a VM's link being made (bb32: a VM's
// address was announced, and when it went the agent closed every connection).
import test from 'ava'
import { multiaddr } from '@multiformats/multiaddr'
import { announceable } from '../../protocol/host.ts'

test('announceable: addresses in the VM link range are left out by address; others stay', t => {
  const addrs = ['/ip4/192.168.1.5/tcp/7400', '/ip4/10.254.0.17/tcp/7400', '/ip4/10.254.15.254/tcp/7400', '/ip4/10.254.16.1/tcp/7400', '/ip4/127.0.0.1/tcp/7400', '/ip6/::1/tcp/7400'].map(a => multiaddr(a))
  t.deepEqual(announceable(addrs).map(a => a.toString()), ['/ip4/192.168.1.5/tcp/7400', '/ip4/10.254.16.1/tcp/7400', '/ip4/127.0.0.1/tcp/7400', '/ip6/::1/tcp/7400'])
})
