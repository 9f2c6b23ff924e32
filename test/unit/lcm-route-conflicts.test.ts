// Routes inside the overlay range that vgrid did not make (node/lcm/route-conflicts.ts),
// from what `ip -j route show table all root PREFIX` prints.
import test from 'ava'
import { foreignRoutes } from '../../node/lcm/route-conflicts.ts'

const own = { wgIf: 'vgwabcdefghijkl', fallbackMetric: 4294967295 }

test('the tunnel, VM interfaces and the fallback route are vgrid\'s; anything else inside the range is named', t => {
  t.deepEqual(foreignRoutes([
    { dst: '100.87.128.0/17', dev: 'vgwabcdefghijkl' },
    { dst: '100.87.0.0/17', dev: 'vgwabcdefghijkl' },
    { type: 'local', dst: '100.87.0.5', dev: 'vgwabcdefghijkl', table: 'local' },
    { dst: '100.87.128.9', dev: 'vgp1a2b3c4d' },
    { dst: '100.87.128.10', dev: 'vgt1a2b3c4d' },
    { type: 'unreachable', dst: '100.87.128.0/17', metric: 4294967295 }
  ], own), [])
  t.deepEqual(foreignRoutes([
    { dst: '100.87.128.0/24', gateway: '192.168.1.1', dev: 'lan0' },
    { dst: '100.87.200.1', dev: 'tailscale0', table: '52' },
    { type: 'unreachable', dst: '100.87.0.0/17' },
    { dst: '100.87.1.0/24', dev: 'vgwzzzzzzzzzzzz' }
  ], own), [
    '100.87.128.0/24 via 192.168.1.1 dev lan0',
    '100.87.200.1 dev tailscale0 table 52',
    'unreachable 100.87.0.0/17',
    '100.87.1.0/24 dev vgwzzzzzzzzzzzz'
  ])
})
