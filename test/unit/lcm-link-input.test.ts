// Link requests (node/lcm/links.ts): unknown fields inside an end are refused as at
// the top level, a request without `protocol` is tcp (as the CLI says), and a
// terminal matches its VM's declared one ignoring case, as vm create compares them
// for duplicates (`link create web.DB ...` was "no output terminal").
import test from 'ava'
import { ValidationError } from '../../node/errors.ts'
import { checkLink, linkId, matchTerminal, parseLinkRequest } from '../../node/lcm/links.ts'

test('unknown fields inside from or to are refused, naming them', t => {
  t.throws(() => parseLinkRequest({ from: { vm: 'web', terminal: 'db', x: 1 }, to: 'db.in', port: 80, protocol: 'tcp' }), { instanceOf: ValidationError, message: 'from: unknown field "x" (an end takes vm, terminal)' })
  t.throws(() => parseLinkRequest({ from: 'web.db', to: { vm: 'db', terminal: 'in', evil: 'yes' }, port: 80, protocol: 'TCP' }), { instanceOf: ValidationError, message: 'to: unknown field "evil" (an end takes vm, terminal)' })
  // what GET /v1/links shows of an end is taken back and ignored (a link read, sent again)
  const shown = parseLinkRequest({ from: { vm: 'web', terminal: 'db', node: 'n1', nodeName: 'h1', address: '10.0.0.2', down: null }, to: { vm: 'db', terminal: 'in', node: null, nodeName: null, address: null, down: 'x' }, port: 80, protocol: 'tcp' })
  t.deepEqual([shown.from, shown.to], [{ vm: 'web', terminal: 'db' }, { vm: 'db', terminal: 'in' }])
  t.throws(() => parseLinkRequest({ from: ['web', 'db'], to: 'db.in', port: 80 }), { instanceOf: ValidationError, message: 'from: a list: give "VM.TERMINAL" or {"vm","terminal"}' })
  t.deepEqual(parseLinkRequest({ from: { vm: 'web', terminal: 'db' }, to: { vm: 'db', terminal: 'in' }, port: 80, protocol: 'udp' }).from, { vm: 'web', terminal: 'db' })
})

test('a request without protocol is tcp, as the CLI\'s default; a wrong one is still refused', t => {
  t.is(parseLinkRequest({ from: 'web.db', to: 'db.in', port: 80 }).protocol, 'tcp')
  t.throws(() => parseLinkRequest({ from: 'web.db', to: 'db.in', port: 80, protocol: null }), { message: 'protocol: null is not tcp or udp' })
  t.throws(() => parseLinkRequest({ from: 'web.db', to: 'db.in', port: 80, protocol: 'sctp' }), { message: 'protocol: "sctp" is not tcp or udp' })
})

test('matchTerminal: exact first, else ignoring case; the declared spelling is returned', t => {
  t.is(matchTerminal(['db', 'cache'], 'DB'), 'db')
  t.is(matchTerminal(['Db'], 'db'), 'Db')
  t.is(matchTerminal(['db'], 'db'), 'db')
  t.is(matchTerminal(['db'], 'dbx'), undefined)
  t.is(matchTerminal([], 'db'), undefined)
})

test('checkLink: terminals given in another case mean the declared ones, and the link (and its id) uses their spelling', t => {
  const vms = new Map([['web', { outputs: ['db'] }], ['db', { inputs: ['In'] }]])
  const l = checkLink(parseLinkRequest({ from: 'web.DB', to: 'db.in', port: 5432 }), { vms, links: [] })
  t.deepEqual(l.from, { vm: 'web', terminal: 'db' })
  t.deepEqual(l.to, { vm: 'db', terminal: 'In' })
  const exact = parseLinkRequest({ from: 'web.db', to: 'db.In', port: 5432 })
  t.is(l.id, linkId(exact), 'the same link as one asked for in the declared spelling')
  // and so the same link twice, or the output taken, are found whatever the case
  t.throws(() => checkLink(parseLinkRequest({ from: 'web.Db', to: 'db.IN', port: 5432 }), { vms, links: [l] }), { message: /exists already/ })
  t.throws(() => checkLink(parseLinkRequest({ from: 'web.DB', to: 'db.in', port: 1 }), { vms, links: [l] }), { message: /output web\.db is connected already/ })
  t.throws(() => checkLink(parseLinkRequest({ from: 'web.nope', to: 'db.in', port: 1 }), { vms, links: [] }), { message: /VM "web" has no output terminal "nope" \(its outputs: db\)$/ })
  // the ends the other way round: said, with the command the right way (bb46)
  t.throws(() => checkLink(parseLinkRequest({ from: 'db.in', to: 'web.db', port: 1 }), { vms, links: [] }), { message: /^from: VM "db" has no output terminal "in" \(it has no outputs: .*\); db\.in is an input: a link goes from an output \(first\) to an input \(second\): vgrid link create web\.db db\.in\?$/ })
})
