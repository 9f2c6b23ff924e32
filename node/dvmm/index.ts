// DVMM (issue 14): VMs anywhere on the grid, placed by leases in the cluster document.
// The agent builds one DvmmService with its components and the node's drivers.
export { driverSpec } from './run-steps.ts'
export { DvmmService, type DvmmComponents, type DvmmInit, type DvmmState, type DvmmMembership } from './service.ts'
export { dvmmRoutes, type HaView } from './routes.ts'
export { decide, type DecideInput, type Decisions, type Claim } from './decide.ts'
export { docView, nodeViews, holdings, vmState, type DocView, type LeaseView } from './view.ts'
export { vmDraft, vmRow, VM_NAME, type CreateVmBody, type VmRow, type VmDetail } from './vms.ts'
export type { HistoryEvent } from './history.ts'
