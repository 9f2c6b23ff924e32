// API routes of the cluster document: GET /v1/state, and node labels
// (PUT/DELETE /v1/nodes/:id/labels/:key, PATCH /v1/nodes/:id/labels for several at once). Writes answer only once the change is on
// disk. With VGRID_TEST_HOOKS=1 a test can cut state sync between peers.
import type { FastifyInstance } from 'fastify'
import { peerIdFromString } from '@libp2p/peer-id'
import { LABEL_KEY_PATTERN, LABEL_VALUE_MAX, isLabelValue } from '../../crdt/index.ts'
import { ConflictError, NotFoundError, ValidationError, bodyObject, onlyFields, quoteGiven } from '../errors.ts'
import type { LabelBody, LabelRemovedView, LabelSetView, LabelsChangedView, StateView } from './types.ts'

/** what these routes use of the state service */
export interface StateRoutesState {
  view: () => StateView
  labelsOf: (node: string) => Record<string, string>
  setLabel: (node: string, key: string, value: string) => Promise<void>
  removeLabel: (node: string, key: string) => Promise<boolean>
  /** sets and removes labels in one change, or none: the keys to remove the node lacks */
  setLabels: (node: string, set: Readonly<Record<string, string>>, remove: readonly string[]) => Promise<string[]>
  setBlocked: (peers: string[]) => void
}

/** what these routes use of the member directory */
export interface StateRoutesDirectory {
  /** `onRoll`: of several members of that name, one on the roll first (MemberDirectory.find) */
  find: (idOrName: string, onRoll?: (id: string) => boolean) => { nodeId: string, advert: { name: string, labels: Record<string, string> } } | undefined
}

interface LabelParams { id: string, key: string }

const labelParams = {
  type: 'object',
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 128 },
    // its form and length are checked in the handlers (checkKey), in words of labels
    key: { type: 'string', minLength: 1 }
  },
  required: ['id', 'key']
}

const KEY_RE = new RegExp(LABEL_KEY_PATTERN)

/** `onRoll`: on the member roll (a name two identities had means the one on it) */
/** operator labels one node may carry: a bound on what every agent holds and `vgrid nodes` prints (bb35 set 3,000), roomy enough for tests that stream writes through labels */
export const NODE_LABELS_MAX = 1024
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/

export const stateRoutes = ({ state, directory, onRoll }: { state: StateRoutesState, directory: StateRoutesDirectory, onRoll?: (node: string) => boolean }) => (app: FastifyInstance): void => {
  /** A member by id or name, or any well-formed peer id (a node that has not joined yet). */
  const resolveNode = (idOrName: string): { id: string, name: string } => {
    const m = directory.find(idOrName, onRoll)
    if (m != null) return { id: m.nodeId, name: m.advert.name }
    try {
      return { id: peerIdFromString(idOrName).toString(), name: idOrName }
    } catch {
      throw new NotFoundError(`no node with id or name ${quoteGiven(idOrName, 128)}`)
    }
  }
  const checkKey = (key: string): void => {
    if (!KEY_RE.test(key)) throw new ValidationError('key', `label key "${key.length > 70 ? `${key.slice(0, 64)}..." (${key.length} characters)` : `${key}"`} must be 1-63 letters, digits, ".", "_", "-" or "/", starting and ending with a letter or digit`, 'invalid_label')
  }
  const checkValue = (key: string, value: string, field = 'value'): void => {
    if (value.length > LABEL_VALUE_MAX) throw new ValidationError(field, `label value for "${key}": ${value.length} characters, at most ${LABEL_VALUE_MAX}`, 'invalid_label')
    if (!isLabelValue(value)) throw new ValidationError(field, `label value for "${key}": may not hold control characters or lone surrogates`, 'invalid_label')
    // they reorder what `vgrid nodes` prints around them (bb35: U+202E taken and shown raw)
    if (BIDI_CONTROLS.test(value)) throw new ValidationError(field, `label value for "${key}": may not hold bidirectional text controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), which reorder what is printed around them`, 'invalid_label')
  }
  // the node's own labels (--label) overlaid with the document's, as /v1/nodes shows them
  const labelsNow = (id: string): Record<string, string> => ({ ...directory.find(id)?.advert.labels, ...state.labelsOf(id) })

  app.get('/v1/state', async (): Promise<StateView> => state.view())

  // the body checked as every other route's is (code `invalid`, the fields it takes named: bb30)
  app.put<{ Params: LabelParams, Body: LabelBody }>('/v1/nodes/:id/labels/:key', { schema: { params: labelParams } }, async (req): Promise<LabelSetView> => {
    const { key } = req.params
    const b = bodyObject(req.body)
    onlyFields(b, ['value'])
    if (b.value === undefined) throw new ValidationError('value', 'value is required: the label\'s value, a string')
    if (typeof b.value !== 'string') throw new ValidationError('value', `value must be a string, not ${b.value === null ? 'null' : typeof b.value}`)
    const value = b.value
    checkKey(key)
    checkValue(key, value)
    const node = resolveNode(req.params.id)
    // every agent holds every node's labels, and `vgrid nodes` prints them (bb35: 3,000 taken)
    const had = state.labelsOf(node.id)
    if (!Object.hasOwn(had, key) && Object.keys(had).length >= NODE_LABELS_MAX) throw new ConflictError(`node ${node.name} has ${Object.keys(had).length} operator labels, the most a node may carry: remove one first (vgrid node unlabel ${node.name} KEY)`, 'too_many_labels')
    await state.setLabel(node.id, key, value)
    return { node: node.id, name: node.name, key, value, labels: labelsNow(node.id) }
  })

  // several labels set and removed at once, all or nothing (bb46: the CLI's one request
  // a key applied those before a bad or missing one, then failed)
  app.patch<{ Params: { id: string }, Body: unknown }>('/v1/nodes/:id/labels', { schema: { params: { type: 'object', properties: { id: labelParams.properties.id }, required: ['id'] } } }, async (req): Promise<LabelsChangedView> => {
    const b = bodyObject(req.body)
    onlyFields(b, ['set', 'remove'])
    const set = b.set === undefined ? {} : b.set
    const remove = b.remove === undefined ? [] : b.remove
    if (typeof set !== 'object' || set === null || Array.isArray(set)) throw new ValidationError('set', 'set must be an object of label keys to string values')
    if (!Array.isArray(remove)) throw new ValidationError('remove', 'remove must be an array of label keys')
    const pairs = Object.entries(set as Record<string, unknown>)
    if (pairs.length === 0 && remove.length === 0) throw new ValidationError('set', 'give labels to set or remove')
    if (pairs.length + remove.length > NODE_LABELS_MAX) throw new ValidationError('set', `${pairs.length + remove.length} labels in one request, at most ${NODE_LABELS_MAX}`)
    for (const [key, value] of pairs) {
      checkKey(key)
      if (typeof value !== 'string') throw new ValidationError('set', `the value of label "${key}" must be a string, not ${value === null ? 'null' : typeof value}`)
      checkValue(key, value, 'set')
    }
    for (const key of remove) {
      if (typeof key !== 'string') throw new ValidationError('remove', `remove holds ${key === null ? 'null' : typeof key}, not a label key`)
      checkKey(key)
      if (Object.hasOwn(set, key)) throw new ValidationError('remove', `label "${key}" is both set and removed: give it once`)
    }
    if (new Set(remove).size !== remove.length) throw new ValidationError('remove', `label "${remove.find((k, i) => remove.indexOf(k) !== i) as string}" is given twice: give each key once`)
    const node = resolveNode(req.params.id)
    const had = state.labelsOf(node.id)
    const after = new Set([...Object.keys(had), ...pairs.map(([k]) => k)].filter(k => !remove.includes(k)))
    if (after.size > NODE_LABELS_MAX && after.size > Object.keys(had).length) throw new ConflictError(`node ${node.name} would carry ${after.size} operator labels, at most ${NODE_LABELS_MAX}: remove some first (vgrid node unlabel ${node.name} KEY)`, 'too_many_labels')
    const missing = await state.setLabels(node.id, set as Record<string, string>, remove as string[])
    if (missing.length > 0) throw new NotFoundError(`node ${node.name} has no operator label ${missing.map(k => `"${k}"`).join(', ')}${pairs.length + remove.length > 1 ? ': nothing was changed' : ''}`)
    return { node: node.id, name: node.name, set: set as Record<string, string>, removed: remove as string[], labels: labelsNow(node.id) }
  })

  app.delete<{ Params: LabelParams }>('/v1/nodes/:id/labels/:key', { schema: { params: labelParams } }, async (req): Promise<LabelRemovedView> => {
    const { key } = req.params
    checkKey(key)
    const node = resolveNode(req.params.id)
    const removed = await state.removeLabel(node.id, key)
    if (!removed) throw new NotFoundError(`node ${node.name} has no operator label "${key}"`)
    return { node: node.id, name: node.name, key, removed: true, labels: labelsNow(node.id) }
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
      state.setBlocked(req.body.peers)
      return { blocked: req.body.peers }
    })
  }
}
