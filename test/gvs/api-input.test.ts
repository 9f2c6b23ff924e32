// Bad input to the volumes API is refused, saying what is wrong: an unknown query
// parameter (a DELETE ?bogus=1 removed the volume), a field given as null (read as not
// given: "nothing to change"), a size past what a JSON number carries exactly (the
// error quoted the rounded number, a size never given).
import test from 'ava'
import { apiOf, memoryHosts, sharedDocument, startServices } from './hosts.ts'
import type { VolumeView } from '../../node/gvs/routes.ts'

test('the volumes API refuses unknown query parameters, null fields and sizes JSON cannot carry', async t => {
  const g = await memoryHosts(t, 1, 'gvsinput')
  await startServices(g, sharedDocument(g.hosts), { scrubIntervalMs: 0 })
  const app = apiOf(g.svcs[0]!)
  const created = await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/in/v', size: '8M' } })
  t.is(created.statusCode, 201, created.body)
  const id = created.json<VolumeView>().id
  const message = (r: { json: <T>() => T }): string => r.json<{ error: { message: string } }>().error.message

  const del = await app.inject({ method: 'DELETE', url: `/v1/volumes/${id}?bogus=1` })
  t.is(del.statusCode, 400, del.body)
  t.regex(message(del), /unknown query parameter "bogus" \(this request takes snapshots\)/)
  t.is((await app.inject({ method: 'GET', url: `/v1/volumes/${id}` })).statusCode, 200, 'not removed')
  const ls = await app.inject({ method: 'GET', url: '/v1/volumes?prefx=/in' })
  t.is(ls.statusCode, 400)
  t.regex(message(ls), /unknown query parameter "prefx"/)

  const nullPath = await app.inject({ method: 'PATCH', url: `/v1/volumes/${id}`, payload: { path: null } })
  t.is(nullPath.statusCode, 400)
  t.regex(message(nullPath), /path null is not a volume path/)
  const nullSize = await app.inject({ method: 'PATCH', url: `/v1/volumes/${id}`, payload: { size: null } })
  t.is(nullSize.statusCode, 400)
  t.regex(message(nullSize), /size must be bytes .* not null/)

  const big = await app.inject({ method: 'POST', url: '/v1/volumes', headers: { 'content-type': 'application/json' }, payload: '{"path":"/in/big","size":9007199254740993}' })
  t.is(big.statusCode, 400)
  t.notRegex(message(big), /9007199254740992/, 'the rounded number is not quoted as if given')
  t.regex(message(big), /beyond 9007199254740991, which JSON cannot carry exactly/)
})
