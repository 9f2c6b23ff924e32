// The key in a VM disk's export name. A VM's disk opens as NAME~EPOCH~KEY: pinned to
// the writer epoch its holder fenced (exports.ts), a session that is the VM's own and
// needs no claim. Without the key any client of this node's NBD socket could open
// NAME~EPOCH (`vol info` prints the epoch) and write under the running VM, past the
// claim that refuses a plain client while a VM uses the volume (a tester did). The key
// is an HMAC of the volume id and epoch under a secret kept in the data dir (0600), so
// it is the same after an agent restart, when QEMU reconnects asking for the same name.
import { createHmac, randomBytes } from 'node:crypto'
import { writeFileDurable } from '../durable-file.ts'
import { readSecretFile } from '../secret-file.ts'
import type { Logger } from '../log.ts'

export const PIN_KEY_FILE = 'gvs-pin.key'
const SECRET_BYTES = 32

export class PinKeys {
  private readonly path: string
  private readonly log: Logger
  private secret: Buffer = randomBytes(SECRET_BYTES)
  /** whether this run made the secret (none was kept: a first start, or an upgrade from a release without keys) */
  fresh = true

  constructor (path: string, log: Logger) {
    this.path = path
    this.log = log
  }

  /** reads the kept secret, or makes and keeps one; a secret it cannot keep still serves this run (logged) */
  async load (): Promise<void> {
    let kept: Buffer | undefined
    try {
      kept = await readSecretFile(this.path, 'the key of VM disks\' export names', this.log)
    } catch (err) {
      // kept as it is: a read that fails for a moment (EIO, EMFILE) must not replace the
      // key the running VMs' QEMU reopen their disks with; the next start reads it again
      this.log.warn('the key of VM disks\' export names cannot be read: this run uses a key of its own and leaves the file as it is; QEMU of VMs started before cannot reopen their disks here until an agent start reads it again', { file: this.path, error: (err as Error).message })
      // a key is kept, only not readable now: not a first start, so names without a key open nothing (a reviewer's)
      this.fresh = false
      return
    }
    if (kept != null && kept.length === SECRET_BYTES) { this.secret = kept; this.fresh = false; return }
    if (kept != null) this.log.warn('the key of VM disks\' export names is damaged (wrong length): a new one is made', { file: this.path })
    try {
      await writeFileDurable(this.path, this.secret, { mode: 0o600 })
    } catch (err) {
      this.log.warn('the key of VM disks\' export names cannot be kept: VM disks opened in this run cannot reopen after a restart of this agent', { file: this.path, error: (err as Error).message })
    }
  }

  /** the key of volume `id`'s export pinned at `epoch` */
  keyOf (id: string, epoch: number): string {
    return createHmac('sha256', this.secret).update(`${id}#${epoch}`).digest('hex').slice(0, 24)
  }
}
