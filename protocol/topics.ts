// Gossip topic names: one set per cluster, so clusters never share a topic.
export const advertTopic = (clusterId: string): string => `/vgrid/${clusterId}/adverts/1`
export const stateTopic = (clusterId: string): string => `/vgrid/${clusterId}/state/1`
export const suspicionTopic = (clusterId: string): string => `/vgrid/${clusterId}/suspicions/1`
/** stream protocol for neighbour heartbeats */
export const heartbeatProtocol = (clusterId: string): string => `/vgrid/${clusterId}/heartbeat/1`
/** stream protocol for the push-pull exchange of adverts when two members connect */
export const memberSyncProtocol = (clusterId: string): string => `/vgrid/${clusterId}/members/1`
