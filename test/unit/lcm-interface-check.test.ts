// What the WireGuard interface needs put back after it was set down (pure).
import test from 'ava'
import { interfaceRepairs, procRoutesOf } from '../../node/lcm/interface-check.ts'

const wanted = { routes: ['100.7.128.0/17', '100.7.0.0/17'] }

test('an interface up with its routes needs nothing', t => {
  t.deepEqual(interfaceRepairs({ flags: ['POINTOPOINT', 'NOARP', 'UP', 'LOWER_UP'], routes: ['100.7.128.0/17', '100.7.0.0/17'] }, wanted), { up: false, routes: [] })
})

test('one set down lost its routes: set up, and both put back', t => {
  t.deepEqual(interfaceRepairs({ flags: ['POINTOPOINT', 'NOARP'], routes: [] }, wanted), { up: true, routes: ['100.7.128.0/17', '100.7.0.0/17'] })
})

test('one set up again by hand still lacks its routes', t => {
  t.deepEqual(interfaceRepairs({ flags: ['UP', 'LOWER_UP'], routes: ['100.7.0.0/17'] }, wanted), { up: false, routes: ['100.7.128.0/17'] })
})

test('the routes through the interface, read from /proc/net/route (no ip spawned while they are there)', t => {
  const text = [
    'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
    'eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0',
    'vgwabc\t00800764\t00000000\t0001\t0\t0\t0\t0080FFFF\t0\t0\t0',
    'vgwabc\t00000764\t00000000\t0001\t0\t0\t0\t0080FFFF\t0\t0\t0',
    'vgwabc\t01020364\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0',
    'junk line',
    ''
  ].join('\n')
  t.deepEqual(procRoutesOf(text, 'vgwabc'), ['100.7.128.0/17', '100.7.0.0/17', '100.3.2.1/32'])
  t.deepEqual(procRoutesOf(text, 'eth0'), ['0.0.0.0/0'])
  t.deepEqual(procRoutesOf('', 'vgwabc'), [])
  t.deepEqual(interfaceRepairs({ flags: ['UP'], routes: procRoutesOf(text, 'vgwabc') }, wanted).routes, [])
})
