import type { Attributes } from '@opentelemetry/api'
import { DataPointType, type MetricData, type ResourceMetrics } from '@opentelemetry/sdk-metrics'

/**
 * Prometheus text format 0.0.4, written the way prometheus_client writes it (so the
 * output of a django app and of this plugin compare line by line): buckets before
 * `_sum`/`_count`, labels sorted, `le` and values in Python's float notation. No
 * `target_info`, no `otel_scope_*` labels, no `# UNIT` lines (django output has none).
 */
export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/** prometheus_client's `floatToGoString`: `1.0`, `0.25`, `1.048576e+06`, `+Inf`. */
export function formatNumber (d: number): string {
  // Counts: the common case, and Python's repr of them is the integer plus `.0` below 1e6.
  if (Number.isInteger(d) && d >= 0 && d < 1e6) return `${d}.0`
  if (d === Infinity) return '+Inf'
  if (d === -Infinity) return '-Inf'
  if (Number.isNaN(d)) return 'NaN'
  let s = pythonRepr(d)
  const dot = s.indexOf('.')
  if (d > 0 && dot > 6 && !s.includes('e')) {
    const mantissa = `${s[0]}.${s.slice(1, dot)}${s.slice(dot + 1)}`.replace(/[0.]+$/, '')
    s = `${mantissa}e+0${dot - 1}`
  }
  return s
}

/** Python's `repr(float)`: shortest round-trip digits, `.0` on integers, exponent past 1e16. */
function pythonRepr (d: number): string {
  const abs = Math.abs(d)
  if (abs !== 0 && (abs >= 1e16 || abs < 1e-4)) {
    const [mantissa, exponent] = d.toExponential().split('e') as [string, string]
    const sign = exponent[0] === '-' ? '-' : '+'
    const digits = exponent.replace(/^[+-]/, '').padStart(2, '0')
    return `${mantissa}e${sign}${digits}`
  }
  const s = String(d)
  return Number.isInteger(d) ? `${s}.0` : s
}

const NAME_INVALID = /[^a-zA-Z0-9_:]/g

export function escapeLabelValue (value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

function escapeHelp (help: string): string {
  return help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
}

function labelPairs (attributes: Attributes, keep: (key: string) => boolean = () => true): string {
  const keys = Object.keys(attributes).filter(keep).sort()
  let out = ''
  for (const key of keys) {
    const raw = attributes[key]
    if (raw === undefined) continue
    const value = typeof raw === 'string' ? raw : JSON.stringify(raw)
    out += `${out === '' ? '' : ','}${key.replace(NAME_INVALID, '_')}="${escapeLabelValue(value)}"`
  }
  return out
}

export function familyName (metric: MetricData): string {
  let name = metric.descriptor.name.replace(NAME_INVALID, '_')
  if (/^[0-9]/.test(name)) name = `_${name}`
  if (metric.dataPointType === DataPointType.SUM && metric.isMonotonic && !name.endsWith('_total')) name += '_total'
  return name
}

function promType (metric: MetricData): string {
  switch (metric.dataPointType) {
    case DataPointType.SUM: return metric.isMonotonic ? 'counter' : 'gauge'
    case DataPointType.GAUGE: return 'gauge'
    case DataPointType.HISTOGRAM: return 'histogram'
    default: return 'untyped'
  }
}

/**
 * Serializes collected metrics. Label strings are cached per attributes object: the
 * store hands out the same object for a series on every scrape, so a scrape of
 * thousands of series formats each label set once in the process's life.
 */
export class Serializer {
  private readonly labelCache = new WeakMap<Attributes, string>()
  /** Per histogram series: each `<name>_bucket{…le="…"…} ` up to the value (Python sorts `le` among the labels). */
  private readonly bucketPrefixes = new WeakMap<Attributes, { name: string, boundaries: readonly number[], prefixes: string[] }>()
  private readonly bucketLabels = new WeakMap<readonly number[], string[]>()

  serialize (resourceMetrics: ResourceMetrics, scopeOrder: (scopeName: string) => number = () => 0): string {
    const families = new Map<string, MetricData[]>()
    const scopes = [...resourceMetrics.scopeMetrics].sort((a, b) => scopeOrder(a.scope.name) - scopeOrder(b.scope.name))
    for (const scope of scopes) {
      for (const metric of scope.metrics) {
        if (metric.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) continue
        const name = familyName(metric)
        const same = families.get(name)
        if (same === undefined) families.set(name, [metric])
        else if (promType(same[0]!) === promType(metric)) same.push(metric)
      }
    }
    const parts: string[] = []
    for (const [name, metrics] of families) {
      const first = metrics[0]!
      parts.push(`# HELP ${name} ${escapeHelp(first.descriptor.description || name)}\n# TYPE ${name} ${promType(first)}\n`)
      for (const metric of metrics) this.samples(name, metric, parts)
    }
    return parts.join('')
  }

  private labels (attributes: Attributes): string {
    let cached = this.labelCache.get(attributes)
    if (cached === undefined) {
      cached = labelPairs(attributes)
      this.labelCache.set(attributes, cached)
    }
    return cached
  }

  private les (boundaries: readonly number[]): string[] {
    let cached = this.bucketLabels.get(boundaries)
    if (cached === undefined) {
      cached = [...boundaries.map(formatNumber), '+Inf'].map((le) => `le="${le}"`)
      this.bucketLabels.set(boundaries, cached)
    }
    return cached
  }

  private samples (name: string, metric: MetricData, parts: string[]): void {
    if (metric.dataPointType === DataPointType.HISTOGRAM) {
      for (const point of metric.dataPoints) {
        const labels = this.labels(point.attributes)
        const { boundaries, counts } = point.value.buckets
        const prefixes = this.prefixes(name, point.attributes, boundaries)
        let cumulative = 0
        let out = ''
        for (let i = 0; i < prefixes.length; i++) {
          cumulative += counts[i] ?? 0
          out += prefixes[i]! + formatNumber(cumulative) + '\n'
        }
        const braces = labels === '' ? '' : `{${labels}}`
        out += `${name}_count${braces} ${formatNumber(point.value.count)}\n${name}_sum${braces} ${formatNumber(point.value.sum ?? 0)}\n`
        parts.push(out)
      }
      return
    }
    if (metric.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) return
    let out = ''
    for (const point of metric.dataPoints) {
      const labels = this.labels(point.attributes)
      out += `${name}${labels === '' ? '' : `{${labels}}`} ${formatNumber(point.value)}\n`
    }
    parts.push(out)
  }

  private prefixes (name: string, attributes: Attributes, boundaries: readonly number[]): string[] {
    const cached = this.bucketPrefixes.get(attributes)
    if (cached !== undefined && cached.name === name && cached.boundaries === boundaries) return cached.prefixes
    let before = labelPairs(attributes, (key) => key < 'le')
    let after = labelPairs(attributes, (key) => key > 'le')
    before = before === '' ? '' : `${before},`
    after = after === '' ? '' : `,${after}`
    const prefixes = this.les(boundaries).map((le) => `${name}_bucket{${before}${le}${after}} `)
    this.bucketPrefixes.set(attributes, { name, boundaries, prefixes })
    return prefixes
  }
}
