// API routes of the cluster document: GET /v1/state, and node labels
// (PUT/DELETE /v1/nodes/:id/labels/:key). Writes answer only once the change is on
// disk. With VGRID_TEST_HOOKS=1 a test can cut state sync between peers.
import { peerIdFromString } from '@libp2p/peer-id'
import type { Agent } from '../agent.ts'
import type { RouteModule } from './server.ts'
import { ApiError } from './errors.ts'
import { InvalidObjectError, NotFoundError, SchemaNewerError, LABEL_KEY_PATTERN, LABEL_VALUE_MAX } from '../../crdt/index.ts'

interface LabelParams { id: string, key: string }

const labelParams = {
  type: 'object',
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 128 },
    key: { type: 'string', minLength: 1, maxLength: 63 }
  },
  required: ['id', 'key']
}

/** A member by id or name, or any well-formed peer id (a node that has not joined yet). */
function resolveNode (agent: Agent, idOrName: string): { id: string, name: string } {
  const n = agent.node(idOrName)
  if (n != null) return { id: n.id, name: n.name }
  try {
    return { id: peerIdFromString(idOrName).toString(), name: idOrName }
  } catch {
    throw new ApiError(404, 'not_found', `no member with id or name "${idOrName}"`)
  }
}

function checkKey (key: string): void {
  if (!new RegExp(LABEL_KEY_PATTERN).test(key)) {
    throw new ApiError(400, 'invalid_label', `label key "${key}" must be 1-63 letters, digits, ".", "_", "-" or "/", starting and ending with a letter or digit`)
  }
}

async function write<T> (fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof ApiError) throw err
    if (err instanceof InvalidObjectError) throw new ApiError(400, 'invalid_label', err.message)
    if (err instanceof NotFoundError) throw new ApiError(404, 'not_found', err.message)
    if (err instanceof SchemaNewerError) throw new ApiError(409, 'schema_newer', err.message)
    throw new ApiError(503, 'state_unavailable', `the change could not be saved: ${(err as Error).message}`)
  }
}

const labelsNow = (agent: Agent, id: string): Record<string, string> => agent.node(id)?.labels ?? agent.state.labelsOf(id)

export const stateRoutes: RouteModule = (app, agent) => {
  app.get('/v1/state', async () => agent.state.view())

  app.put<{ Params: LabelParams, Body: { value: string } }>('/v1/nodes/:id/labels/:key', {
    schema: {
      params: labelParams,
      body: {
        type: 'object',
        properties: { value: { type: 'string', maxLength: LABEL_VALUE_MAX } },
        required: ['value'],
        additionalProperties: false
      }
    }
  }, async (req) => {
    const { key } = req.params
    checkKey(key)
    const node = resolveNode(agent, req.params.id)
    await write(async () => await agent.state.setLabel(node.id, key, req.body.value))
    return { node: node.id, name: node.name, key, value: req.body.value, labels: labelsNow(agent, node.id) }
  })

  app.delete<{ Params: LabelParams }>('/v1/nodes/:id/labels/:key', { schema: { params: labelParams } }, async (req) => {
    const { key } = req.params
    checkKey(key)
    const node = resolveNode(agent, req.params.id)
    const removed = await write(async () => await agent.state.removeLabel(node.id, key))
    if (!removed) throw new ApiError(404, 'not_found', `node ${node.name} has no operator label "${key}"`)
    return { node: node.id, name: node.name, key, removed: true, labels: labelsNow(agent, node.id) }
  })

  if (process.env.VGRID_TEST_HOOKS === '1') {
    app.put<{ Body: { peers: string[] } }>('/v1/state/test/blocked-peers', {
      schema: {
        body: {
          type: 'object',
          properties: { peers: { type: 'array', maxItems: 1024, items: { type: 'string', minLength: 1, maxLength: 128 } } },
          required: ['peers'],
          additionalProperties: false
        }
      }
    }, async (req) => {
      agent.state.setBlocked(req.body.peers)
      return { blocked: req.body.peers }
    })
  }
}
