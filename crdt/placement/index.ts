// Placement: pure decisions over the cluster document and membership (issue 14).
export * from './types.ts'
export * from './feasible.ts'
export * from './rank.ts'
export * from './lease.ts'
export * from './fence.ts'
export * from './restart.ts'
export * from './ha.ts'
export * from './volume-epoch.ts'
