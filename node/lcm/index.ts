// The connection manager (LCM): WireGuard tunnels between agents, stable overlay
// addresses for VMs, declared connections enforced and counted by nftables.
import type { StateService } from '../state/index.ts'
import type { MembershipService } from '../../protocol/membership-service.ts'
import type { LcmComponents, LcmState } from './service.ts'

export { LcmService, type LcmComponents, type LcmInit, type LcmStatus, type LcmState, type WireguardAdvert } from './service.ts'
export { WgInterface, WireguardUnavailableError, loadOrCreateKeypair, probeBackend } from './wireguard.ts'
export { WireguardError, interfaceName, parseDump, type PeerConfig, type PeerState, type InterfaceState } from './wireguard-format.ts'
export { overlayPrefix, allocate, vmAddress, nodeAddress, type OverlayPrefix } from './overlay.ts'
export { computeRuleset, peerAllowedIps, tableName, type Link, type VmPlace, type Ruleset } from './rules.ts'
export { applyRuleset, readCounters, removeRuleset } from './nft.ts'
export { parseLinkRequest, checkLink, linkId, terminalHosts, type LinkView } from './links.ts'
export { link as linkCommand, net as netCommand } from './cli.ts'

// Compile-time check that the agent's parts fit the LCM's narrow components (the
// wiring in node/agent.ts passes them as they are).
export type AgentPartsFit = [StateService extends LcmState ? true : never, MembershipService extends LcmComponents['membership'] ? true : never]
export const agentPartsFit: AgentPartsFit = [true, true]
