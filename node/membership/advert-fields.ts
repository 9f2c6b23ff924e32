// The parts of this node's advert that other services own: the state service its
// document heads, the VM manager its reserved resources, the connection manager its
// WireGuard key and endpoint, the node runtime how it runs VMs, the volume store the
// room left on its disk and what it holds there. Each provides a
// getter; `changed()` asks for a new advert at once (otherwise the next refresh carries it).
import { EventEmitter } from 'node:events'
import type { Resources, VmHostAdvert } from '../../protocol/advert.ts'
import { ZERO } from '../resources.ts'

export interface ProvidedFields {
  reserved: Resources
  wireguard: { publicKey: string, endpoint: string } | null
  stateHeads: string[]
  vmHost: VmHostAdvert | null
  /** the room the volume store has left on its disk (null: none known): the advert's free disk is no more */
  diskAvailable: number | null
  /** the bytes the volume store holds on this node's disk (null: not measured): counted off the free disk */
  diskStored: number | null
  /** why the overlay is down (null: up, or off) */
  overlayDown: string | null
  /** why the data dir's disk counts as full (null: it has room) */
  dataDiskFull: string | null
}

const DEFAULTS: ProvidedFields = { reserved: ZERO, wireguard: null, stateHeads: [], vmHost: null, diskAvailable: null, diskStored: null, overlayDown: null, dataDiskFull: null }

export class AdvertFields extends EventEmitter<{ changed: [] }> {
  private readonly providers: { [K in keyof ProvidedFields]?: () => ProvidedFields[K] } = {}

  provide<K extends keyof ProvidedFields> (field: K, get: () => ProvidedFields[K]): void {
    this.providers[field] = get as never
  }

  get<K extends keyof ProvidedFields> (field: K): ProvidedFields[K] {
    const p = this.providers[field] as (() => ProvidedFields[K]) | undefined
    return p == null ? DEFAULTS[field] : p()
  }

  /** a provided field changed: advertise now */
  changed (): void { this.emit('changed') }
}
