// What the WireGuard interface needs put back after it was set down (pure).
import test from 'ava'
import { interfaceRepairs } from '../../node/lcm/interface-check.ts'

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
