// A cpio "newc" archive writer (the initramfs format the kernel unpacks), pure: entries
// in, bytes out. Times are zero so the same inputs give the same archive (the image
// cache is keyed by content).
export type CpioEntry =
  | { kind: 'dir', path: string, mode?: number }
  | { kind: 'file', path: string, data: Uint8Array, mode?: number }
  | { kind: 'symlink', path: string, target: string }
  | { kind: 'chardev', path: string, major: number, minor: number, mode?: number }

const hex8 = (n: number): string => n.toString(16).padStart(8, '0')
const pad4 = (n: number): number => (4 - (n % 4)) % 4

function header (o: { ino: number, mode: number, nlink: number, size: number, rmajor: number, rminor: number, name: string }): Buffer {
  const name = Buffer.from(o.name + '\0')
  const h = '070701' + [o.ino, o.mode, 0, 0, o.nlink, 0, o.size, 0, 0, o.rmajor, o.rminor, name.length, 0].map(hex8).join('')
  return Buffer.concat([Buffer.from(h, 'ascii'), name, Buffer.alloc(pad4(110 + name.length))])
}

export function cpioNewc (entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = []
  let ino = 1
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, '')
    if (name === '' || name.split('/').includes('..')) throw new Error(`cpio: bad path "${e.path}"`)
    let data = Buffer.alloc(0)
    let mode: number
    let rmajor = 0
    let rminor = 0
    if (e.kind === 'dir') mode = 0o040000 | (e.mode ?? 0o755)
    else if (e.kind === 'file') { mode = 0o100000 | (e.mode ?? 0o644); data = Buffer.from(e.data) } else if (e.kind === 'symlink') { mode = 0o120777; data = Buffer.from(e.target) } else { mode = 0o020000 | (e.mode ?? 0o600); rmajor = e.major; rminor = e.minor }
    parts.push(header({ ino: ino++, mode, nlink: e.kind === 'dir' ? 2 : 1, size: data.length, rmajor, rminor, name }), data, Buffer.alloc(pad4(data.length)))
  }
  parts.push(header({ ino: 0, mode: 0, nlink: 1, size: 0, rmajor: 0, rminor: 0, name: 'TRAILER!!!' }))
  return Buffer.concat(parts)
}
