// The replicated cluster document: schema, conflict rules, typed reads and writes,
// and the Replica that holds one agent's copy. Only crdt/ touches Automerge.
export * from './schema.ts'
export * from './conflicts.ts'
export { Reader, StaleReaderError, type Counts, type InvalidHandler } from './reader.ts'
export { Writer, InvalidObjectError, NotFoundError, listTail } from './writer.ts'
export { Replica, SchemaNewerError, actorFor, type ReplicaOptions } from './replica.ts'
export { sameHeads, type PeerSync, type ReceiveResult, type RejectReason } from './sync-session.ts'
export { MIGRATIONS, GENESIS_ACTOR, type Migration } from './genesis.ts'
export { syncPair, type PairResult } from './sync-pair.ts'
export { Hlc, tick, observe, MAX_FUTURE_MS, type HlcState } from './hlc.ts'
