// Who is in the grid, as this node sees it: the membership service fills it, and
// anyone who needs a member's name or addresses reads it (the state service's peer
// list, the API's node views) without holding the membership service.
import { expandShortId, memberByName, type Member, type MemberTable } from '../../protocol/membership.ts'

export class MemberDirectory {
  private source: () => MemberTable = () => new Map()

  /** the membership service hands over where its table lives (it is replaced on every step, so read it live) */
  attach (source: () => MemberTable): void { this.source = source }

  get members (): MemberTable { return this.source() }
  private get table (): MemberTable { return this.source() }
  get (id: string): Member | undefined { return this.table.get(id) }
  nameOf (id: string): string | undefined { return this.table.get(id)?.advert.name }
  addrsOf (id: string): string[] { return this.table.get(id)?.advert.addrs ?? [] }

  /** by peer id (or one shortened as `vgrid nodes` prints it) or by name (memberByName: a replaced server's new identity over its old one) */
  find (idOrName: string, onRoll?: (id: string) => boolean): Member | undefined {
    return this.table.get(expandShortId(idOrName, this.table.keys())) ?? memberByName(this.table.values(), idOrName, onRoll)
  }
}
