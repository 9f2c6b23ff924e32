// A boot signature written into a volume's first sector over NBD (a qemu VM with neither
// kernel nor image boots from its first volume, and one whose first sector is all zeros
// is refused at start: node/dvmm/boot-checks.ts).
import { NbdClient } from '../helpers/nbd-client.ts'

export async function writeBootSector (socket: string, exportName: string): Promise<void> {
  const client = await NbdClient.open(socket, exportName)
  const sector = Buffer.alloc(512)
  sector[510] = 0x55
  sector[511] = 0xaa
  await client.write(0, sector)
  await client.flush()
  await client.close()
}
