import test from 'ava'
import type { Member } from '../../protocol/membership.ts'
import type { Advert } from '../../protocol/advert.ts'
import { addressing, diffPeers, planPeers } from '../../node/lcm/plan.ts'
import { overlayPrefix, vmAddress, nodeAddress } from '../../node/lcm/overlay.ts'
import { checkLink, linkId, oneLinkPerOutput, parseLinkRequest, terminalHosts } from '../../node/lcm/links.ts'
import { hostsFile, terminalEnv } from '../../node/dvmm/drivers/common.ts'
import { ConflictError, NotFoundError, ValidationError } from '../../node/errors.ts'
import { formatNet, linkLine, linkRows } from '../../node/lcm/cli.ts'
import type { LinkView } from '../../node/lcm/links.ts'

const K = ['yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=', 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=', 'TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=']
const member = (id: string, state: Member['state'], wg: Advert['wireguard']): Member =>
  ({ nodeId: id, state, since: 0, lastSeen: 0, version: { incarnation: 1, seq: 1 }, advert: { name: id, wireguard: wg } as unknown as Advert })
const p = overlayPrefix('c')
const doc = {
  vms: [{ id: 'web', at: 1, overlayIndex: 4 }, { id: 'db', at: 2, overlayIndex: 4 }, { id: 'new', at: 3 }],
  leases: [{ vm: 'web', holder: 'n2' }, { vm: 'db', holder: 'n3' }],
  roll: [{ node: 'n1', joined: 1, overlayIndex: 0 }, { node: 'n2', joined: 2, overlayIndex: 1 }]
}

test('addressing: stored indexes kept, a conflict moved, VMs placed on their holders, nodes addressed', t => {
  const a = addressing(p, doc, ['n1', 'n2', 'n3'])
  t.is(a.vms.find(v => v.vm === 'web')!.address, vmAddress(p, 4).v4)
  t.not(a.vms.find(v => v.vm === 'db')!.address, vmAddress(p, 4).v4, 'the later claim lost index 4')
  t.true(a.vmAlloc.get('db')!.changed)
  t.is(a.vms.find(v => v.vm === 'new')!.node, null)
  t.is(a.nodeAddr.get('n1'), nodeAddress(p, 0).v4)
  t.is(a.nodeAddr.get('n2'), nodeAddress(p, 1).v4)
  t.truthy(a.nodeAddr.get('n3'), 'a member not on the roll yet is addressed too')
  t.is(new Set(a.nodeAddr.values()).size, 3)
})

test('planPeers: alive and suspect members with valid adverts; dead, left, self and malformed ones not', t => {
  const members = new Map([
    ['n1', member('n1', 'alive', { publicKey: K[0]!, endpoint: '10.0.0.1:51820' })],
    ['n2', member('n2', 'alive', { publicKey: K[1]!, endpoint: '10.0.0.2:51820' })],
    ['n3', member('n3', 'suspect', { publicKey: K[2]!, endpoint: '10.0.0.3:51820' })],
    ['n4', member('n4', 'dead', { publicKey: K[2]!, endpoint: '10.0.0.4:51820' })],
    ['n5', member('n5', 'alive', { publicKey: 'not-a-key', endpoint: '10.0.0.5:51820' })],
    ['n6', member('n6', 'alive', { publicKey: K[1]!.replace('x', 'y'), endpoint: 'somewhere' })],
    ['n7', member('n7', 'alive', { publicKey: K[1]!, endpoint: '10.0.0.7:51820' })],
    ['n8', member('n8', 'alive', null)],
    ['n9', member('n9', 'left', { publicKey: Buffer.alloc(32, 9).toString('base64'), endpoint: '10.0.0.9:51820' })]
  ])
  const a = addressing(p, doc, members.keys())
  const plan = planPeers('n1', K[0]!, members, a, 25)
  t.deepEqual([...plan.peers.keys()], ['n2', 'n3'])
  t.deepEqual(plan.peers.get('n2'), { publicKey: K[1]!, endpoint: '10.0.0.2:51820', allowedIps: [`${nodeAddress(p, 1).v4}/32`, `${vmAddress(p, 4).v4}/32`], persistentKeepalive: 25 })
  t.deepEqual(plan.rejected.map(r => [r.node, r.reason]), [['n5', 'bad-key'], ['n6', 'bad-endpoint'], ['n7', 'duplicate-key']])
})

test('diffPeers: sets what is missing or different, removes what nobody wants, respects roaming', t => {
  const cur = [
    { publicKey: K[1]!, endpoint: '10.0.0.99:51820', allowedIps: ['100.1.0.2/32'], latestHandshake: 0, rxBytes: 0, txBytes: 0, persistentKeepalive: 25 },
    { publicKey: K[2]!, endpoint: null, allowedIps: [], latestHandshake: 0, rxBytes: 0, txBytes: 0, persistentKeepalive: 0 }
  ]
  const want = [{ publicKey: K[1]!, endpoint: '10.0.0.2:51820', allowedIps: ['100.1.0.2/32'], persistentKeepalive: 25 }]
  // the interface roamed to .99 after we applied .2: not a difference
  t.deepEqual(diffPeers(cur, want, new Map([[K[1]!, '10.0.0.2:51820']])), { set: [], remove: [K[2]!] })
  // the advert now names another endpoint than we applied: set it
  t.deepEqual(diffPeers(cur, want, new Map([[K[1]!, '10.0.0.1:51820']])).set, want)
  // allowed IPs changed (a VM moved)
  t.deepEqual(diffPeers(cur, [{ ...want[0]!, allowedIps: ['100.1.0.2/32', '100.1.128.5/32'] }], new Map([[K[1]!, '10.0.0.2:51820']])).set.length, 1)
})

test('link requests: parsed, checked against the document, with clear errors', t => {
  const vms = new Map([['web', { outputs: ['db'] }], ['db', { inputs: ['in'] }], ['free', {}]])
  const r = parseLinkRequest({ from: 'web.db', to: { vm: 'db', terminal: 'in' }, protocol: 'tcp', port: 5432 })
  const l = checkLink(r, { vms, links: [] })
  t.is(l.id, linkId(r))
  t.is(parseLinkRequest({ from: 'web.db', to: 'db.in', protocol: 'UDP', port: 53 }).protocol, 'udp', 'TCP and UDP as commonly written (a tester)')
  t.deepEqual(l, { id: l.id, from: { vm: 'web', terminal: 'db' }, to: { vm: 'db', terminal: 'in' }, protocol: 'tcp', port: 5432 })
  t.throws(() => checkLink(r, { vms, links: [l] }), { instanceOf: ConflictError, message: /exists already/ })
  t.throws(() => checkLink({ ...r, port: 1 }, { vms, links: [l] }), { instanceOf: ConflictError, message: /output web.db is connected already/ })
  t.throws(() => checkLink({ ...r, to: { vm: 'ghost', terminal: 'in' } }, { vms, links: [] }), { instanceOf: NotFoundError, message: /no VM "ghost"/ })
  t.throws(() => checkLink({ ...r, to: { vm: 'db', terminal: 'nope' } }, { vms, links: [] }), { instanceOf: NotFoundError, message: /no input terminal "nope"/ })
  t.throws(() => checkLink({ ...r, from: { vm: 'free', terminal: 'any' } }, { vms, links: [] }), { instanceOf: NotFoundError, message: /VM "free" has no output terminal "any" \(it has no outputs: .*declared when it is created/ }, 'a VM that declared no terminals has none')
  // a VM from before terminals were declared has those its links already use: an input takes more links
  const old = { id: 'link-old', from: { vm: 'db', terminal: 'out' }, to: { vm: 'free', terminal: 'cache' }, protocol: 'tcp' as const, port: 6379 }
  t.is(checkLink({ ...r, to: { vm: 'free', terminal: 'cache' } }, { vms, links: [old] }).to.terminal, 'cache')
  t.throws(() => checkLink({ ...r, to: { vm: 'free', terminal: 'other' } }, { vms, links: [old] }), { instanceOf: NotFoundError, message: /VM "free" has no input terminal "other" \(its inputs: cache\)/ })
  t.throws(() => checkLink({ ...r, to: { vm: 'web', terminal: 'x' } }, { vms: new Map([['web', { outputs: ['db'], inputs: ['x'] }]]), links: [] }), { instanceOf: ValidationError, message: /itself/ })
  for (const [body, msg] of [
    [null, /body/], [{ from: 'web', to: 'db.in', protocol: 'tcp', port: 1 }, /from.*VM.TERMINAL/],
    [{ from: 'web.db', to: 'db.in', protocol: 'icmp', port: 1 }, /protocol/], [{ from: 'web.db', to: 'db.in', protocol: 'tcp', port: 70000 }, /port/],
    [{ from: 'web.db', to: 'db.in', protocol: 'tcp' }, /port/], [{ from: 'web.d b', to: 'db.in', protocol: 'tcp', port: 1 }, /terminal/]
  ] as const) t.throws(() => parseLinkRequest(body), { instanceOf: ValidationError, message: msg })
})

test('vgrid net text shows the interface, peers and drops, or exactly why WireGuard is down', t => {
  const status = { ok: true, error: null, errorSince: null, applyError: null, applyErrorSince: null, routeConflict: null, routeConflictSince: null, backend: 'userspace' as const, interface: 'vgabc', publicKey: K[0]!, endpoint: '10.0.0.1:51820', address: '100.70.0.1', prefix: p }
  const text = formatNet({ status, peers: [{ node: 'n2', name: 'b', publicKey: K[1]!, endpoint: '10.0.0.2:51820', allowedIps: ['100.70.0.2/32'], latestHandshake: new Date(10_000).toISOString(), rxBytes: 2048, txBytes: 10 }], rules: { table: 't', flows: 1, skipped: [] }, drops: [{ src: 'a', dst: 'b', srcVm: 'web', dstVm: 'db', srcLink: null, packets: 3, spoofed: 2 }] }, 15_000)
  t.regex(text, /vgabc \(userspace\)/)
  t.regex(text, /b\s+10\.0\.0\.2:51820\s+5 s ago\s+2\.0 KiB/)
  t.regex(text, /web\s+db\s+3\s+2/)
  t.regex(text, /^\(FORGED: packets that carried that source address/m)
  // all forged: the address's owner did not send them (a tester saw an innocent VM named)
  t.regex(formatNet({ status, peers: [], rules: { table: 't', flows: 0, skipped: [] }, drops: [{ src: 'a', dst: 'b', srcVm: 'web2', dstVm: 'db', srcLink: null, packets: 3, spoofed: 3 }] }, 15_000), /web2's address, forged\s+db\s+3\s+3/)
  // a forged address no VM holds: the address, not "its address" (bb27)
  t.regex(formatNet({ status, peers: [], rules: { table: 't', flows: 0, skipped: [] }, drops: [{ src: '100.127.241.99', dst: 'b', srcVm: null, dstVm: 'db', srcLink: null, packets: 2, spoofed: 2 }] }, 15_000), /100\.127\.241\.99, forged\s+db\s+2\s+2/)
  // sent from a VM's own link address (10.254.0.2 on every node's first VM): the VM is named, not called a forger (a tester saw the bare address)
  const fromLink = formatNet({ status, peers: [], rules: { table: 't', flows: 0, skipped: [] }, drops: [{ src: '10.254.0.2', dst: '100.70.128.9', srcVm: null, dstVm: 'db', srcLink: 'web', packets: 4, spoofed: 4 }] }, 15_000)
  t.regex(fromLink, /web, from its link address 10\.254\.0\.2\s+db\s+4\s+4/)
  t.regex(fromLink, /^\(from its link address: the VM sent from the address of its link/m)
  t.notRegex(fromLink, /FORGED:/)
  const down = formatNet({ status: { ...status, ok: false, error: 'WireGuard cannot start: no kernel module and no wireguard-go' }, peers: [], rules: { table: 't', flows: 0, skipped: [] }, drops: [] })
  t.regex(down, /WireGuard is not running: WireGuard cannot start: no kernel module and no wireguard-go/)
  const unapplied = formatNet({ status: { ...status, applyError: 'nft: Operation not permitted', applyErrorSince: new Date(5_000).toISOString() }, peers: [], rules: { table: 't', flows: 0, skipped: [] }, drops: [] }, 15_000)
  t.regex(unapplied, /^connections not applied for 10 s \(trying again\): nft: Operation not permitted$/m)
})

test('terminal names resolve to the address of the VM at the other end of each output', t => {
  const links = [
    { id: 'a', from: { vm: 'lb', terminal: 'web1' }, to: { vm: 'w1', terminal: 'in' }, protocol: 'tcp' as const, port: 80 },
    { id: 'b', from: { vm: 'lb', terminal: 'web2' }, to: { vm: 'w2', terminal: 'in' }, protocol: 'tcp' as const, port: 80 },
    { id: 'c', from: { vm: 'w1', terminal: 'db' }, to: { vm: 'db', terminal: 'in' }, protocol: 'tcp' as const, port: 5432 }
  ]
  const addr: Record<string, string> = { w1: '100.70.128.2', w2: '100.70.128.3' }
  const names = terminalHosts('lb', links, vm => addr[vm] ?? null)
  t.deepEqual(names, { web1: '100.70.128.2', web2: '100.70.128.3' })
  t.deepEqual(terminalHosts('w1', links, vm => addr[vm] ?? null), {}, 'an end without an address yet is left out')
  t.is(hostsFile(names), '127.0.0.1\tlocalhost\n::1\tlocalhost\n100.70.128.2\tweb1\n100.70.128.3\tweb2\n')
  t.deepEqual(terminalEnv({ web1: '100.70.128.2', 'db-main': '100.70.128.9' }), { VGRID_TERMINAL_WEB1: '100.70.128.2', VGRID_TERMINAL_DB_MAIN: '100.70.128.9' })
})

test('one link per output on every node: two written at once from one output, the earliest is the link, the other is skipped with the reason', t => {
  const a = { id: 'link-b', from: { vm: 'web', terminal: 'db' }, to: { vm: 'db', terminal: 'in' }, protocol: 'tcp' as const, port: 5432, at: 100 }
  const b = { ...a, id: 'link-a', to: { vm: 'db2', terminal: 'in' }, at: 200 }
  const c = { ...a, id: 'link-c', from: { vm: 'web', terminal: 'cache' }, at: 50 }
  for (const order of [[a, b, c], [c, b, a], [b, c, a]]) {
    const r = oneLinkPerOutput(order)
    t.deepEqual(r.links.map(l => l.id).sort(), ['link-b', 'link-c'])
    t.deepEqual(r.skipped, [{ link: 'link-a', reason: 'output web.db is connected already, by link-b (made first); remove one of them' }])
  }
  // equal times: the smaller id is first
  t.deepEqual(oneLinkPerOutput([a, { ...b, at: 100 }]).links.map(l => l.id), ['link-a'])
})

test('link ls says where its counts come from, that PACKETS include those sent into a tunnel that is down, and shows counts it could not get as unknown', t => {
  const end = { vm: 'web', terminal: 'db', node: 'n2', nodeName: 'b', address: '100.70.0.2', down: null }
  const base = { id: 'link-1', from: end, to: { ...end, vm: 'db', terminal: 'in' }, protocol: 'tcp', port: 5432, packets: 7, drops: 0, skipped: null, path: 'tunnel', noTunnel: null, counts: { node: 'n2', name: 'b', error: null } } as unknown as LinkView
  t.regex(linkRows([{ ...base, tunnel: { node: 'n2', name: 'b', publicKey: 'k', down: null } } as LinkView]), /PACKETS and DROPS are counted on the node the FROM end runs on; PACKETS are those its rules let through$/)
  t.regex(linkRows([{ ...base, tunnel: { node: 'n2', name: 'b', publicKey: 'k', down: null } } as LinkView]), /^TUNNEL is as this node carries it: /m, 'the column explained (bb32)')
  t.regex(linkRows([{ ...base, tunnel: { node: 'n2', name: 'b', publicKey: 'k', down: 'partial partition' } } as LinkView]), /b DOWN: partial partition[\s\S]*also into a tunnel that is DOWN, where they are lost$/)
  // its node did not answer: unknown, not zero, and why
  const silent = linkRows([{ ...base, packets: 0, tunnel: null, path: 'elsewhere', counts: { node: 'n2', name: 'b', error: 'counted on b, which did not answer: timeout' } } as LinkView])
  t.regex(silent, /tcp\s+5432\s+-\s+-\s+-\s*$/m)
  t.regex(silent, /^link-1: counts not known: counted on b, which did not answer: timeout$/m)
  // neither end here: the FROM end's node says its tunnel to the TO end's node is down
  const elsewhere = linkRows([{ ...base, tunnel: null, path: 'elsewhere', to: { ...base.to, node: 'n3', nodeName: 'c' }, counts: { node: 'n2', name: 'b', error: null, tunnelDown: 'no WireGuard handshake for 200 s' } } as LinkView])
  t.regex(elsewhere, /c DOWN on b: no WireGuard handshake for 200 s/)
  t.regex(elsewhere, /also into a tunnel that is DOWN, where they are lost$/)
  // a link that lost the race for its output carries nothing: said, not its tunnel (bb27)
  t.regex(linkRows([{ ...base, tunnel: { node: 'n2', name: 'b', publicKey: 'k', down: null }, skipped: 'output web.db is connected already, by link-0 (made first); remove one of them' } as LinkView]),
    /5432\s+output web\.db is connected already, by link-0 \(made first\); remove one of them\s+7\s+0/)
  // vm show lists a VM's links one a line (bb42: it listed none)
  t.is(linkLine({ ...base, tunnel: { node: 'n2', name: 'b', publicKey: 'k', down: 'no WireGuard handshake for 200 s' } } as LinkView), 'link-1 web.db@b -> db.in@b tcp port 5432; tunnel to b DOWN: no WireGuard handshake for 200 s')
  t.is(linkLine({ ...base, tunnel: null, path: 'local' } as LinkView), 'link-1 web.db@b -> db.in@b tcp port 5432; both ends on one node')
  t.is(linkLine({ ...base, tunnel: null, path: 'elsewhere', port: null } as LinkView), 'link-1 web.db@b -> db.in@b tcp any port')
  t.is(linkLine({ ...base, skipped: 'output web.db is connected already, by link-0 (made first); remove one of them' } as LinkView), 'link-1 web.db@b -> db.in@b tcp port 5432; carries nothing: output web.db is connected already, by link-0 (made first); remove one of them')
  // FROM end runs nowhere: nothing counted
  t.regex(linkRows([{ ...base, packets: 0, tunnel: null, path: 'unplaced', counts: { node: null, name: null, error: null } } as LinkView]), /5432\s+-\s+-\s+-/)
})
