import type { Attributes } from '@opentelemetry/api'
import type { Warnings } from '../faults'
import { isReservedKey, labelName, labelValue } from '../translation'
import type { InstrumentState } from './instruments'

/** The SDK's own overflow attribute set: `otel_metric_overflow="true"` on /metrics, the spec's key over OTLP. */
export const OVERFLOW: Attributes = Object.freeze({ 'otel.metric.overflow': true })
const EMPTY: Attributes = Object.freeze({})

/** An attribute set's identity: keys sorted, each key and string value length-prefixed (no two sets share one). */
function attributesKey (attributes: Attributes): string {
  const keys = Object.keys(attributes)
  if (keys.length === 0) return ''
  if (keys.length > 1) keys.sort()
  let key = ''
  for (const k of keys) {
    const v = attributes[k]
    const value = typeof v === 'string' ? v : JSON.stringify(v) ?? ''
    key += `${k.length}:${k}${typeof v === 'string' ? 's' : 'j'}${value.length}:${value}`
  }
  return key
}

/**
 * Which attribute sets an instrument records: at most `limit - 1` for the life of the process, every
 * further set recorded as the overflow set (the SDK applies its limit per collection only, and its
 * cumulative storage keeps every set). Keys Prometheus reserves (`le`, `quantile`, `__…__`) are renamed
 * (`key_le`), with one warning; keys that become the same label name are told about once (the
 * serializer joins their values).
 */
export class AttributeAdmission {
  /** `limit`: `cardinalityLimit`, attribute sets per instrument, the overflow set included. */
  constructor (private readonly limit: number, private readonly warnings: Warnings) {}

  /** The attribute set to record: the admitted one (reserved keys renamed), or the overflow set past the limit. */
  admit (state: InstrumentState, attributes: Attributes | undefined): Attributes {
    const given = attributes ?? EMPTY
    const key = attributesKey(given)
    const found = state.admitted.get(key)
    if (found !== undefined) return found
    if (state.admitted.size >= this.limit - 1) return OVERFLOW
    const prepared = this.prepare(state, given)
    state.admitted.set(key, prepared)
    return prepared
  }

  /** A copy (the app may mutate its object later) with reserved keys renamed, warning once about what changes. */
  private prepare (state: InstrumentState, attributes: Attributes): Attributes {
    const prepared: Attributes = {}
    const byLabel = new Map<string, string[]>()
    for (const key of Object.keys(attributes).sort()) {
      let recorded = key
      if (isReservedKey(key)) {
        recorded = labelName(key)
        this.warnings.once(`attribute "${key}" of ${state.family} is a name Prometheus reserves; it is recorded as "${recorded}"`)
      }
      const value = attributes[key]
      prepared[recorded] = recorded in prepared ? `${labelValue(prepared[recorded])};${labelValue(value)}` : value
      const label = labelName(recorded)
      const keys = byLabel.get(label)
      if (keys === undefined) byLabel.set(label, [recorded])
      else if (!keys.includes(recorded)) keys.push(recorded)
    }
    for (const [label, keys] of byLabel) {
      if (keys.length > 1) this.warnings.once(`attributes ${keys.map((k) => `"${k}"`).join(', ')} of ${state.family} all become the label "${label}"; its value joins theirs with ";"`)
    }
    return prepared
  }
}
