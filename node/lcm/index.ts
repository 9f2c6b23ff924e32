// The connection manager (LCM): WireGuard tunnels between agents, stable overlay
// addresses for VMs, declared connections enforced and counted by nftables.
export { LcmService, type LcmComponents, type LcmInit, type LcmStatus, type LcmState, type WireguardAdvert } from './service.ts'
export { WgInterface, WireguardError, WireguardUnavailableError, interfaceName, loadOrCreateKeypair, probeBackend, parseDump, type PeerConfig, type PeerState, type InterfaceState } from './wireguard.ts'
export { overlayPrefix, allocate, vmAddress, nodeAddress, type OverlayPrefix } from './overlay.ts'
export { computeRuleset, peerAllowedIps, tableName, type Link, type VmPlace, type Ruleset } from './rules.ts'
export { applyRuleset, readCounters, removeRuleset } from './nft.ts'
export { parseLinkRequest, checkLink, linkId, type LinkView } from './links.ts'
