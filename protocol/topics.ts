// Gossip topic names: one set per cluster, so clusters never share a topic.
export const advertTopic = (clusterId: string): string => `/vgrid/${clusterId}/adverts/1`
export const stateTopic = (clusterId: string): string => `/vgrid/${clusterId}/state/1`
