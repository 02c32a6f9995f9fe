import type { ScopeMetrics, MetricData } from '@opentelemetry/sdk-metrics'

/** What the primary and its workers send each other: a worker's collection, or the totals, by round id. */
export const HELLO = 'upstream-metrics:hello'
export const ASK = 'upstream-metrics:aggregate'
export const COLLECT = 'upstream-metrics:collect'
export const COLLECTED = 'upstream-metrics:collected'
export const ANSWER = 'upstream-metrics:aggregated'
/** A worker's last counts, sent as its app closes (not an answer to a round). */
export const FINAL = 'final'

export interface Message { type: string, id: string, namespace?: string, scopeMetrics?: ScopeMetrics[], error?: string }

export function isMessage (value: unknown): value is Message {
  return typeof value === 'object' && value !== null && typeof (value as Message).type === 'string' && (value as Message).type.startsWith('upstream-metrics:')
}

/**
 * IPC serializes to JSON by default, which turns Infinity and NaN into null. Non-finite values travel as
 * `{ nonFinite: 'NaN' }` (attributes never hold objects, so nothing else can look like one).
 */
interface NonFinite { nonFinite: string }

const isNonFinite = (v: unknown): v is NonFinite => typeof v === 'object' && v !== null && typeof (v as NonFinite).nonFinite === 'string'
const needsEncoding = (v: unknown): boolean => typeof v === 'number' && !Number.isFinite(v)
const encode = (v: unknown): unknown => needsEncoding(v) ? { nonFinite: String(v) } : v
const decode = (v: unknown): unknown => isNonFinite(v) ? Number(v.nonFinite) : v

function pointValues (value: any): unknown[] {
  return typeof value === 'object' && value !== null ? [value.sum, value.min, value.max] : [value]
}

/** The collections as they can be sent: a copy only when a value needs it. */
export function toWire (collection: ScopeMetrics[]): ScopeMetrics[] {
  const affected = collection.some((s) => s.metrics.some((m) => (m.dataPoints as any[]).some((p) => pointValues(p.value).some(needsEncoding))))
  if (!affected) return collection
  return collection.map((s) => ({
    scope: s.scope,
    metrics: s.metrics.map((m) => ({
      ...m,
      dataPoints: (m.dataPoints as any[]).map((p) => ({
        ...p,
        value: typeof p.value === 'object' ? { ...p.value, sum: encode(p.value.sum), min: encode(p.value.min), max: encode(p.value.max) } : encode(p.value)
      }))
    }) as MetricData)
  }))
}

/** Restores in place what `toWire` encoded (the received objects are this process's own). */
export function fromWire (collection: ScopeMetrics[]): ScopeMetrics[] {
  for (const s of collection) {
    for (const m of s.metrics) {
      for (const p of m.dataPoints as any[]) {
        if (typeof p.value !== 'object' || p.value === null || isNonFinite(p.value)) p.value = decode(p.value)
        else for (const field of ['sum', 'min', 'max']) if (isNonFinite(p.value[field])) p.value[field] = decode(p.value[field])
      }
    }
  }
  return collection
}
