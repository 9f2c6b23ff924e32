// The drivers by name, for the DVMM service to make the ones its node runs.
import { FakeDriver, type FakeDriverInit } from './fake.ts'
import type { HostDriverComponents } from './host-base.ts'
import { ProcessDriver, type ProcessDriverInit } from './process.ts'
import { QemuDriver, type QemuDriverInit } from './qemu.ts'
import type { DriverName, VmDriver } from './types.ts'

export type { DriverName, DriverVmSpec, DriverBoot, VmDriver, VmInfo, VmState, VmExit, ExitReason, ProbeResult, DriverEvents } from './types.ts'
export { DriverError } from './types.ts'
export { FakeDriver, FakeNode } from './fake.ts'
export { ProcessDriver } from './process.ts'
export { QemuDriver } from './qemu.ts'

export type DriverInit = ProcessDriverInit & QemuDriverInit & FakeDriverInit

export function createDriver (name: DriverName, components: HostDriverComponents, init: DriverInit): VmDriver {
  switch (name) {
    case 'process': return new ProcessDriver(components, init)
    case 'qemu': return new QemuDriver(components, init)
    case 'fake': return new FakeDriver(components, init)
  }
}
