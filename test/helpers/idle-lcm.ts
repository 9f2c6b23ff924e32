// The parts of a connection manager that the link routes read and that a route test does
// not exercise: no tunnels, no counters, nothing to plan (node/lcm/routes.ts).
export const idleLcm = {
  peerStates: async (): Promise<never[]> => [],
  counters: async () => ({ counters: new Map<string, { packets: number, bytes: number }>(), drops: [] }),
  drops: async (): Promise<never[]> => [],
  schedule: (): void => {},
  settled: async (): Promise<void> => {}
}
