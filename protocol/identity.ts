// The node's Ed25519 identity: made on first start, kept in the data dir (0600),
// so the peer id survives restarts.
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { join } from 'node:path'
import { writeFileDurable } from '../node/durable-file.ts'
import type { Logger } from '../node/log.ts'
import { readSecretFile } from '../node/secret-file.ts'

export const IDENTITY_FILE = 'identity.key'

export async function loadOrCreateIdentity (dataDir: string, log?: Logger): Promise<PrivateKey> {
  const path = join(dataDir, IDENTITY_FILE)
  const buf = await readSecretFile(path, 'identity file', log)
  if (buf != null) {
    try {
      return privateKeyFromProtobuf(buf)
    } catch {
      throw new Error(`identity file ${path} is damaged; move it away to start this node with a new identity`)
    }
  }
  const key = await generateKeyPair('Ed25519')
  // durable before the peer id is used: a rename lost in a power cut would give this
  // node another peer id on the next start, and the grid a new member
  await writeFileDurable(path, privateKeyToProtobuf(key), { mode: 0o600 })
  return key
}
