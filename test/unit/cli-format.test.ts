// Numbers and sizes in the CLI's tables, as people write them.
import test from 'ava'
import { num } from '../../node/cli/format.ts'
import { vmHostParts } from '../../node/cli/commands/status.ts'

test('num: whole numbers as they are, others to two places at most without trailing zeros (bb38: 0.50/2 beside 1/2)', t => {
  t.is(num(2), '2')
  t.is(num(0.5), '0.5')
  t.is(num(0.25), '0.25')
  t.is(num(4 / 3), '1.33')
  t.is(num(0.1 + 0.2), '0.3')
  t.is(num(1.999), '2')
})

test('vgrid nodes: VM HOST says a node runs no VM when its probe left every driver out, and names a driver left out (bb42: "tcg,cgroup-v1" on such a node)', t => {
  t.deepEqual(vmHostParts({ cgroup: 'v1', accel: 'tcg', drivers: ['process', 'qemu'] }), ['tcg', 'cgroup-v1'])
  t.deepEqual(vmHostParts({ cgroup: 'v1', accel: 'tcg', drivers: [] }), ['no-vm-driver'])
  t.deepEqual(vmHostParts({ cgroup: 'v2', accel: 'kvm', drivers: ['process'] }), ['no-qemu', 'cgroup-v2'])
  t.deepEqual(vmHostParts({ cgroup: 'v1', accel: 'tcg', drivers: ['qemu'] }), ['tcg', 'cgroup-v1', 'no-process'])
  t.deepEqual(vmHostParts({ cgroup: 'v1', accel: null } as unknown as Parameters<typeof vmHostParts>[0]), ['no-qemu', 'cgroup-v1'], 'an earlier release sends no driver list')
})
