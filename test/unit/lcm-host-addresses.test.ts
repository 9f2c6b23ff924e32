// The host's own addresses as the LCM reads them: the WireGuard endpoint it advertises
// and the key whose change means the host moved (roaming). VMs' interfaces are not the host's.
import test from 'ava'
import type { NetworkInterfaceInfo } from 'node:os'
import { addressKey, firstAddress, type Interfaces } from '../../node/lcm/host-addresses.ts'

const v4 = (address: string, internal = false): NetworkInterfaceInfo =>
  ({ address, netmask: '255.255.255.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal, cidr: `${address}/24` })

const host: Interfaces = {
  lo: [v4('127.0.0.1', true)],
  vgwabcdefghijkl: [v4('100.77.0.3')],
  eth0: [v4('192.0.2.10')]
}
// a process VM's veth and a qemu VM's tap, as DVMM addresses their node ends
const withVms: Interfaces = { ...host, vgp1a2b3c4d5e6f: [v4('10.254.0.1')], vgt0f1e2d3c4b5a: [v4('10.254.1.1')] }

test('starting or stopping VMs is no change of the host address', t => {
  t.is(addressKey(withVms, 'vgwabcdefghijkl'), addressKey(host, 'vgwabcdefghijkl'))
  t.is(addressKey(host, 'vgwabcdefghijkl'), '192.0.2.10')
  t.not(addressKey({ ...host, eth0: [v4('198.51.100.7')] }, 'vgwabcdefghijkl'), addressKey(host, 'vgwabcdefghijkl'), 'the host moved')
})

test('the endpoint is a host address, never a VM interface\'s, the overlay\'s or loopback', t => {
  t.is(firstAddress(withVms, 'vgwabcdefghijkl', 77), '192.0.2.10')
  // the moment the host's own interface has no address (a DHCP renewal): nothing, not a VM link's 10.254.x.1
  const vmsFirst: Interfaces = { vgp1a2b3c4d5e6f: [v4('10.254.0.1')], lo: host.lo, eth0: [] }
  t.is(firstAddress(vmsFirst, 'vgwabcdefghijkl', 77), null)
  t.is(firstAddress({ other: [v4('100.77.9.9')] }, 'vgwabcdefghijkl', 77), null, 'an overlay address on another interface')
})
