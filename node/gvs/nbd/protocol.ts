// The NBD protocol's numbers (NetworkBlockDevice/nbd doc/proto.md) and the pure
// encoders and decoders of its messages. Only what the server speaks: the fixed
// newstyle handshake and simple replies.
import type { BlockDevice } from '../block-device.ts'
import { GvsError } from '../errors.ts'

export const NBDMAGIC = 0x4e42444d41474943n
export const IHAVEOPT = 0x49484156454f5054n
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n
export const REQUEST_MAGIC = 0x25609513
export const SIMPLE_REPLY_MAGIC = 0x67446698

export const FLAG_FIXED_NEWSTYLE = 1 << 0
export const FLAG_NO_ZEROES = 1 << 1
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0
export const FLAG_C_NO_ZEROES = 1 << 1

export const OPT = {
  EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED_REPLY: 8
} as const

export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_UNKNOWN: 0x80000006
} as const

export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const

export const TFLAG = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  CAN_MULTI_CONN: 1 << 8
} as const

export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7 } as const
export const CMD_FLAG = { FUA: 1 << 0, NO_HOLE: 1 << 1, DF: 1 << 2, REQ_ONE: 1 << 3, FAST_ZERO: 1 << 4 } as const

export const ERRNO = { EPERM: 1, EIO: 5, ENOMEM: 12, EINVAL: 22, ENOSPC: 28, EOVERFLOW: 75, ENOTSUP: 95, ESHUTDOWN: 108 } as const

/** block size constraints we advertise: any alignment, 4 KiB preferred, 32 MiB payloads */
export const MIN_BLOCK = 1
export const PREFERRED_BLOCK = 4096
export const MAX_PAYLOAD = 32 * 1024 * 1024

/** the server's first 18 bytes */
export function serverGreeting (): Buffer {
  const b = Buffer.alloc(18)
  b.writeBigUInt64BE(NBDMAGIC, 0)
  b.writeBigUInt64BE(IHAVEOPT, 8)
  b.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16)
  return b
}

export function optionReply (option: number, type: number, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(20)
  h.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0)
  h.writeUInt32BE(option, 8)
  h.writeUInt32BE(type, 12)
  h.writeUInt32BE(data.length, 16)
  return Buffer.concat([h, data])
}

export function infoExport (size: number, flags: number): Buffer {
  const b = Buffer.alloc(12)
  b.writeUInt16BE(INFO.EXPORT, 0)
  b.writeBigUInt64BE(BigInt(size), 2)
  b.writeUInt16BE(flags, 10)
  return b
}

export function infoBlockSize (): Buffer {
  const b = Buffer.alloc(14)
  b.writeUInt16BE(INFO.BLOCK_SIZE, 0)
  b.writeUInt32BE(MIN_BLOCK, 2)
  b.writeUInt32BE(PREFERRED_BLOCK, 6)
  b.writeUInt32BE(MAX_PAYLOAD, 10)
  return b
}

export function infoString (type: number, s: string): Buffer {
  const t = Buffer.alloc(2)
  t.writeUInt16BE(type, 0)
  return Buffer.concat([t, Buffer.from(s, 'utf8')])
}

/** an NBD_REP_SERVER entry of NBD_OPT_LIST */
export function serverEntry (name: string): Buffer {
  const n = Buffer.from(name, 'utf8')
  const l = Buffer.alloc(4)
  l.writeUInt32BE(n.length, 0)
  return Buffer.concat([l, n])
}

/** NBD_OPT_INFO / NBD_OPT_GO data: the export name and the info types asked for */
export function parseInfoRequest (data: Buffer): { name: string, infos: number[] } {
  if (data.length < 6) throw new GvsError('invalid', `option data is ${data.length} bytes, less than the 6 an INFO/GO request needs`)
  const nameLen = data.readUInt32BE(0)
  if (nameLen > data.length - 6) throw new GvsError('invalid', `export name length ${nameLen} exceeds the option's ${data.length - 6} bytes`)
  const name = data.subarray(4, 4 + nameLen).toString('utf8')
  const count = data.readUInt16BE(4 + nameLen)
  const rest = data.length - 6 - nameLen
  if (rest !== count * 2) throw new GvsError('invalid', `${count} information requests need ${count * 2} bytes, the option has ${rest}`)
  const infos: number[] = []
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(6 + nameLen + i * 2))
  return { name, infos }
}

export interface Request { flags: number, type: number, cookie: Buffer, offset: number, length: number }

/** a 28-byte request header; null when the magic is wrong (the session must end) */
export function parseRequest (h: Buffer): Request | null {
  if (h.readUInt32BE(0) !== REQUEST_MAGIC) return null
  // the u64 offset as two halves (no BigInt per request); past 2^53 it stays out of range
  const hi = h.readUInt32BE(16)
  const offset = hi >= 0x200000 ? Number.MAX_SAFE_INTEGER : hi * 0x100000000 + h.readUInt32BE(20)
  return {
    flags: h.readUInt16BE(4),
    type: h.readUInt16BE(6),
    cookie: Buffer.from(h.subarray(8, 16)),
    offset,
    length: h.readUInt32BE(24)
  }
}

export function simpleReply (cookie: Buffer, error: number): Buffer {
  // every byte is written below
  const b = Buffer.allocUnsafe(16)
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0)
  b.writeUInt32BE(error, 4)
  cookie.copy(b, 8)
  return b
}

/** the NBD errno for an error of the store */
export function errnoOf (err: unknown): number {
  if (!(err instanceof GvsError)) return ERRNO.EIO
  switch (err.code) {
    case 'stale-epoch':
    case 'in-use': return ERRNO.EPERM
    case 'invalid': return ERRNO.EINVAL
    case 'no-space': return ERRNO.ENOSPC
    case 'damaged':
    case 'frozen':
    case 'unavailable':
    case 'io': return ERRNO.EIO
  }
}

export function transmissionFlags (dev: BlockDevice): number {
  // CAN_MULTI_CONN: a flush on any connection covers every write acknowledged on all
  // of them, which is BlockDevice.flush's contract
  let f = TFLAG.HAS_FLAGS | TFLAG.SEND_FLUSH | TFLAG.SEND_FUA | TFLAG.SEND_TRIM | TFLAG.SEND_WRITE_ZEROES | TFLAG.CAN_MULTI_CONN
  if (dev.readOnly) f |= TFLAG.READ_ONLY
  return f
}
