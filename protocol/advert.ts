// The resource advert: what each agent gossips about itself. JSON on the wire,
// validated against one schema and signed by the node it describes (Ed25519, key
// taken from its peer id), so an advert can be relayed by anyone (member sync on
// join) and still be checked end to end.
//
// Forward compatible: a newer release may add fields (at the top or inside an object
// such as capacity). An agent that does not know them *keeps* them: the signature
// covers the JSON of every field but sig, in the order they arrive, and an advert is
// relayed (member sync) as the object it was decoded to, so only a kept field lets
// the next agent verify it. Unknown fields are otherwise never read. An advert is
// rejected only when a field this agent knows is missing or out of its schema.
// A change that alters a known field's meaning or type is not an added field: it
// needs a new protocol version (`proto`, see compat.ts), not a bigger schema.
import { Type, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { parseJsonMessage, type Rejection } from './json-message.ts'

/** the advert's envelope format; unlike `proto` it never changes (new fields are simply added) */
export const ADVERT_VERSION = 1
/** adverts are small; anything bigger is malformed or hostile */
export const MAX_ADVERT_BYTES = 16 * 1024

const Count = Type.Number({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })
/** unknown fields are kept (see the top of this file) */
const open = { additionalProperties: true }
const ProtoVersion = Type.Integer({ minimum: 1, maximum: 65535 })
/** the longest liveness window an advert says (a day); a node whose window is longer says none */
export const MAX_LIVENESS_MS = 86_400_000

export const ResourcesSchema = Type.Object({
  cpu: Count,
  memoryBytes: Count,
  diskBytes: Count
}, open)

export const AdvertSchema = Type.Object({
  v: Type.Literal(ADVERT_VERSION),
  /** the newest protocol version the node speaks; absent (agents before it was added) means 1 */
  proto: Type.Optional(ProtoVersion),
  /** the oldest protocol version it still speaks; absent means `proto` */
  protoMin: Type.Optional(ProtoVersion),
  cluster: Type.String({ minLength: 1, maxLength: 64 }),
  nodeId: Type.String({ minLength: 1, maxLength: 128 }),
  name: Type.String({ minLength: 1, maxLength: 128 }),
  /** start time of this run of the agent (ms); with seq it orders adverts across restarts */
  incarnation: Count,
  seq: Count,
  /** 'leaving' is the last advert of a graceful stop */
  status: Type.Union([Type.Literal('alive'), Type.Literal('leaving')]),
  addrs: Type.Array(Type.String({ maxLength: 256 }), { maxItems: 32 }),
  capacity: ResourcesSchema,
  reserved: ResourcesSchema,
  free: ResourcesSchema,
  load: Type.Array(Type.Number({ minimum: 0 }), { minItems: 3, maxItems: 3 }),
  /** the agent's release (node/version.ts) */
  version: Type.String({ maxLength: 64 }),
  labels: Type.Record(Type.String({ maxLength: 63 }), Type.String({ maxLength: 256 })),
  wireguard: Type.Union([Type.Null(), Type.Object({
    publicKey: Type.String({ maxLength: 64 }),
    endpoint: Type.String({ maxLength: 128 })
  }, open)]),
  /** how this node runs VMs: which cgroup hierarchy holds their limits, which accelerator QEMU gets, which drivers work */
  vmHost: Type.Optional(Type.Object({
    cgroup: Type.Union([Type.Literal('v1'), Type.Literal('v2'), Type.Literal('none')]),
    accel: Type.Union([Type.Literal('kvm'), Type.Literal('tcg'), Type.Null()]),
    drivers: Type.Array(Type.String({ maxLength: 32 }), { maxItems: 8 }),
    /** it boots a qemu VM from its first volume (absent: an agent of an earlier release, which cannot) */
    volumeBoot: Type.Optional(Type.Boolean()),
    /** it runs a VM with the size its lease reserved and parks a lease claimed for a spec since changed (absent: an earlier release, which `vm update` waits for) */
    leaseSized: Type.Optional(Type.Boolean())
  }, open)),
  /**
   * the node's fence timeout setting (ms; 3 s to 10 min, as the agent's flag): a takeover of its
   * leases waits at least this (plus a margin) after it was last heard of; absent (an older agent): 5 s
   */
  fenceTimeoutMs: Type.Optional(Type.Integer({ minimum: 3000, maximum: 600_000 })),
  /**
   * the silence timeout in force on the node (ms; membership-service.ts silenceFor): a
   * member it hears no heartbeat from stays alive in its view this long, so a takeover
   * of its leases in a large roll waits at least this too (fence.ts holderNoticeMs);
   * absent (an older agent): the taker's own
   */
  silenceMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400_000 })),
  /**
   * the node's liveness window (ms; protocol/liveness.ts): it counts a member in sight
   * only while that member's beat counter advanced there within this window, so cut off
   * from all it loses sight of every member this long after the cut, and a takeover of
   * its leases in a large roll waits this instead of the silence timeout (fence.ts
   * holderNoticeMs); absent (an older agent, or a window past a day): it counts by the
   * silence timeout
   */
  livenessMs: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_LIVENESS_MS })),
  /** why the node's overlay (WireGuard) is down (absent: up, or off): placement makes it the last choice for VMs with connections */
  overlayDown: Type.Optional(Type.String({ maxLength: 512 })),
  /**
   * the members this node does not reach though others do (a partial cut: its membership's
   * out-of-reach list; absent: none, or not said): placement makes it the last choice for
   * VMs with connections or disks, whose peers and volume holders it may not reach
   */
  unreached: Type.Optional(Type.Array(Type.String({ maxLength: 128 }), { maxItems: 64 })),
  /** why the disk of the node's data dir counts as full (absent: it has room, or not said): placement puts no VM there (its run records cannot be written) */
  dataDiskFull: Type.Optional(Type.String({ maxLength: 512 })),
  /** heads of the cluster document, so peers that are not directly connected can pull */
  stateHeads: Type.Optional(Type.Array(Type.String({ maxLength: 128 }), { maxItems: 64 })),
  /** base64 Ed25519 signature over the JSON of every other field (unknown ones too), in the order sent */
  sig: Type.String({ maxLength: 128 })
}, open)

export type Advert = Static<typeof AdvertSchema>
export type UnsignedAdvert = Omit<Advert, 'sig'>
export type Resources = Static<typeof ResourcesSchema>
export type VmHostAdvert = NonNullable<Advert['vmHost']>

const check = TypeCompiler.Compile(AdvertSchema)

export type AdvertRejection = Rejection

export type DecodeResult =
  | { ok: true, advert: Advert }
  | { ok: false, reason: AdvertRejection, detail: string }

export function encodeAdvert (advert: Advert): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(advert))
}

const signedBytes = (a: UnsignedAdvert): Uint8Array => {
  const { sig: _sig, ...rest } = a as Advert
  return new TextEncoder().encode(JSON.stringify(rest))
}

export async function signAdvert (key: PrivateKey, advert: UnsignedAdvert): Promise<Advert> {
  const sig = await key.sign(signedBytes(advert))
  return { ...advert, sig: Buffer.from(sig).toString('base64') }
}

async function signatureOk (a: Advert): Promise<boolean> {
  try {
    return await peerIdFromString(a.nodeId).publicKey?.verify(signedBytes(a), Buffer.from(a.sig, 'base64')) ?? false
  } catch {
    return false
  }
}

/**
 * Decodes and checks one advert. `signer`, when given, is the peer that signed the
 * gossipsub envelope: on gossip an advert is only accepted from the node it
 * describes. Relayed adverts (member sync) pass no signer and rest on `sig` alone.
 */
export async function decodeAdvert (data: Uint8Array, signer: string | undefined, clusterId: string): Promise<DecodeResult> {
  // checked on gossip too (although the envelope is signed by the same node), so that
  // an advert is accepted or refused alike however it arrives
  return await withSignatureChecked(parseAdvert(data, signer, clusterId))
}

async function withSignatureChecked (res: DecodeResult): Promise<DecodeResult> {
  if (!res.ok) return res
  if (!await signatureOk(res.advert)) return { ok: false, reason: 'bad-signature', detail: res.advert.nodeId }
  return res
}

/**
 * A relayed advert (member sync), checked on its own signature, or null when
 * `wanted` turns it down first: every neighbour relays the whole grid to a new
 * member, and only adverts newer than the ones held are worth a signature check.
 */
export async function decodeRelayedAdvert (data: Uint8Array, clusterId: string, wanted: (a: Advert) => boolean): Promise<DecodeResult | null> {
  const res = parseAdvert(data, undefined, clusterId)
  if (res.ok && !wanted(res.advert)) return null
  return await withSignatureChecked(res)
}

function parseAdvert (data: Uint8Array, signer: string | undefined, clusterId: string): DecodeResult {
  const res = parseJsonMessage(data, MAX_ADVERT_BYTES, check)
  if (!res.ok) return res
  const value = res.value
  if (value.cluster !== clusterId) return { ok: false, reason: 'wrong-cluster', detail: value.cluster }
  if (signer != null && value.nodeId !== signer) return { ok: false, reason: 'forged', detail: `${signer} described ${value.nodeId}` }
  return { ok: true, advert: value }
}
