// The range every node's VM links (veth and tap pairs, node/dvmm/host/net.ts) are
// addressed from: the same on every node, so an address in it names no one node and is
// never announced as an agent's (host.ts announceable).
export const VM_LINK_RANGE = '10.254.0.0/20'
