// Bad input to the agent's configuration, refused at once and by name: a config file
// that is no regular file or is far too large (--config /dev/zero read until
// "Invalid string length"), and a --capacity cpu that vm create would refuse (1e9).
import test from 'ava'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MAX_CONFIG_BYTES, listenHostPort, readConfigFile, resolveConfig } from '../../node/config.ts'
import { parseCapacity, parseCpu } from '../../node/resources.ts'

function root (t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-cfg-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

test('a config file that is a device, a directory or a pipe is refused, naming it, without reading it', async t => {
  await t.throwsAsync(readConfigFile('/dev/zero'), { message: 'config file /dev/zero: not a regular file (a device): give the JSON file' })
  const dir = root(t)
  await t.throwsAsync(readConfigFile(dir), { message: `config file ${dir}: not a regular file (a directory): give the JSON file` })
  const fifo = join(dir, 'fifo')
  execFileSync('mkfifo', [fifo])
  // a pipe with no writer: the open must not wait for one
  await t.throwsAsync(readConfigFile(fifo), { message: `config file ${fifo}: not a regular file (a pipe): give the JSON file` })
  await t.throwsAsync(resolveConfig({ config: '/dev/zero' }), { message: /^config file \/dev\/zero: not a regular file/ })
})

test('a config file over 1 MiB is refused, naming it; one just under is read', async t => {
  const dir = root(t)
  const big = join(dir, 'big.json')
  writeFileSync(big, `{"name": "x", "labels": {"k": "${'a'.repeat(MAX_CONFIG_BYTES)}"}}`)
  await t.throwsAsync(readConfigFile(big), { message: `config file ${big}: larger than 1 MiB, which no vgrid config file is: is it the right file?` })
  const ok = join(dir, 'ok.json')
  const text = JSON.stringify({ name: 'x' })
  writeFileSync(ok, text + ' '.repeat(MAX_CONFIG_BYTES - text.length))
  t.deepEqual(await readConfigFile(ok), { name: 'x' })
})

test('--capacity cpu refuses what vm create --cpu refuses (1e9, 0x1), in its words; whitespace around is taken as for sizes', t => {
  t.throws(() => parseCapacity('cpu=1e9'), { message: '--capacity: cpu "1e9" is not a number of vCPUs (e.g. 1, 0.5, 2)' })
  t.throws(() => parseCapacity('cpu=0x1'), { message: /cpu "0x1" is not a number of vCPUs/ })
  t.throws(() => parseCapacity('cpu=2,mem=99999999T'), { message: '--capacity: mem=99999999T is more than a node can have (at most 9007199254740991 bytes, just under 8P)' }, 'bb41: advertised as 1.1e20 bytes')
  t.throws(() => parseCapacity('disk=9000P'), { message: /--capacity: disk=9000P is more than a node can have/ })
  t.deepEqual(parseCapacity('mem=7P'), { memoryBytes: 7 * 2 ** 50 })
  t.throws(() => parseCapacity('cpu=Infinity'), { message: /cpu "Infinity" is not a number of vCPUs/ })
  t.throws(() => parseCapacity('cpu=0'), { message: '--capacity: cpu "0": must be above zero' })
  t.deepEqual(parseCapacity('cpu= 1 ,mem= 64M'), { cpu: 1, memoryBytes: 64 * 1024 ** 2 })
  t.deepEqual(parseCapacity('cpu=.5'), { cpu: 0.5 })
  t.is(parseCpu(' 1', '--cpu'), 1)
  t.is(parseCpu('2.5\t', '--cpu'), 2.5)
  t.throws(() => parseCpu('', '--cpu'), { message: '--cpu "" is not a number of vCPUs (e.g. 1, 0.5, 2)' })
  t.throws(() => parseCpu('1 2', '--cpu'), { message: /is not a number of vCPUs/ })
})

test('resolveConfig passes the --capacity cpu error on as it is', async t => {
  await t.throwsAsync(resolveConfig({ capacity: 'cpu=1e9' }), { message: '--capacity: cpu "1e9" is not a number of vCPUs (e.g. 1, 0.5, 2)' })
})

test('--api takes an IP address (or localhost) to listen on, checked before anything starts (bb24: 999.1.1.1 started every service, then failed with ENOTFOUND)', async t => {
  await t.throwsAsync(resolveConfig({ api: '999.1.1.1:80' }), { message: '--api: "999.1.1.1" is not an IP address to listen on (e.g. 127.0.0.1:7401)' })
  await t.throwsAsync(resolveConfig({ api: 'example.invalid:80' }), { message: /^--api: "example.invalid" is not an IP address/ })
  for (const ok of ['127.0.0.1:7401', '[::1]:7401', 'localhost:7401', ':7401']) t.notThrows(() => listenHostPort(ok, '--api'), ok)
})

test('a config value of the wrong type is said for its key; a doubled --capacity and an empty listen list are refused (bb35)', async t => {
  const dir = root(t)
  const file = (name: string, text: string): string => { const f = join(dir, name); writeFileSync(f, text); return f }
  await t.throwsAsync(readConfigFile(file('a.json', '{"listen": 5}')), { message: /at "listen": must be a multiaddr string, or a list of them, not number 5$/ })
  await t.throwsAsync(readConfigFile(file('b.json', '[]')), { message: /b\.json: must be a JSON object of settings, not a list$/ })
  await t.throwsAsync(readConfigFile(file('c.json', '{"fenceTimeout": true}')), { message: /at "fenceTimeout": must be a duration \("3s", "10m"\) or a number of milliseconds, not boolean true$/ })
  await t.throwsAsync(readConfigFile(file('d.json', '{"gvs": {"repairRate": []}}')), { message: /at "gvs\.repairRate": must be a number or a string/ })
  await t.throwsAsync(resolveConfig({ config: file('e.json', '{"listen": []}') }), { message: /^--listen: no address given/ })
  t.throws(() => parseCapacity('cpu=1,cpu=2'), { message: '--capacity: cpu is given twice: give each resource once' })
  t.throws(() => parseCapacity('mem=1G,memory=2G'), { message: '--capacity: mem is given twice: give each resource once' })
  t.deepEqual(parseCapacity(''), {}, 'empty: no override, as before (an upgraded agent\'s config may have it)')
})
