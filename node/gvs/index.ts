// GVS: the global volume store (issue 15). The agent starts GvsService; the CLI
// dispatches `vgrid vol ...` to vol().
export { GvsService, exportName, type GvsComponents, type GvsInit } from './service.ts'
export { vol } from './cli.ts'
export { ObjectStore, type WriteOptions, type DamageReport } from './object-store.ts'
export { LocalVolume, type BlockDevice } from './block-device.ts'
export { ReplicatedVolume } from './replicated-volume.ts'
export { ReplicaService, type ReplicaTransport } from './replication.ts'
export { NbdServer, type NbdServerInit } from './nbd/server.ts'
export { Placement, place, OBJECT_SIZE, objectKey } from './placement.ts'
export { Repairer, planRepair, type RepairPlan, type RepairReport } from './repair.ts'
export { GvsError, type GvsErrorCode } from './errors.ts'
