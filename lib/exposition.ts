import type { Attributes } from '@opentelemetry/api'
import { DataPointType, type MetricData, type ResourceMetrics } from '@opentelemetry/sdk-metrics'
import { STORE_SCOPE } from './producer'
import { labelName, labelValue, metricName, sampleNames, type InstrumentKind } from './translation'

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

/** A series' labels, sorted by name (Python sorts them). */
type Labels = Array<[string, string]>
/** The labels and their text `a="1",b="2"`. */
interface LabelSet { readonly list: Labels, readonly text: string }

/** The store's labels: its label names are the django ones, written as they are. */
function exactLabels (attributes: Attributes): Labels {
  const labels: Labels = []
  for (const key of Object.keys(attributes).sort()) {
    const raw = attributes[key]
    if (raw !== undefined) labels.push([key.replace(NAME_INVALID, '_'), labelValue(raw)])
  }
  return labels
}

/**
 * An SDK instrument's labels, translated as Prometheus translates OTLP attributes: keys that
 * become the same label name join their values with `;`, in the order of their original keys.
 */
function translatedLabels (attributes: Attributes): Labels {
  const byLabel = new Map<string, string>()
  for (const key of Object.keys(attributes).sort()) {
    const raw = attributes[key]
    if (raw === undefined) continue
    const label = labelName(key)
    const before = byLabel.get(label)
    byLabel.set(label, before === undefined ? labelValue(raw) : `${before};${labelValue(raw)}`)
  }
  return [...byLabel].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
}

function pairs (labels: Labels): string {
  return labels.map(([name, value]) => `${name}="${escapeLabelValue(value)}"`).join(',')
}

/** The store's family name: its own, with the counter `_total` rule of prometheus_client. */
export function familyName (metric: MetricData): string {
  let name = metric.descriptor.name.replace(NAME_INVALID, '_')
  if (/^[0-9]/.test(name)) name = `_${name}`
  if (metric.dataPointType === DataPointType.SUM && metric.isMonotonic && !name.endsWith('_total')) name += '_total'
  return name
}

function instrumentKind (metric: MetricData): InstrumentKind {
  switch (metric.dataPointType) {
    case DataPointType.SUM: return metric.isMonotonic ? 'counter' : 'updowncounter'
    case DataPointType.HISTOGRAM: return 'histogram'
    default: return 'gauge'
  }
}

function promType (metric: MetricData): string {
  switch (metric.dataPointType) {
    case DataPointType.SUM: return metric.isMonotonic ? 'counter' : 'gauge'
    case DataPointType.GAUGE: return 'gauge'
    case DataPointType.HISTOGRAM: return 'histogram'
    default: return 'untyped'
  }
}

export interface SerializerOptions {
  /** Scopes whose metric names and label names are written as they are (the store's); every other scope's are translated. */
  exactScopes?: readonly string[]
  /** Families written `# TYPE … untyped` (gauges named `_total`, which promtool rejects as gauges). */
  untyped?: () => ReadonlySet<string>
  /** Told about a family left out because an earlier one already writes one of its sample names. */
  onConflict?: (family: string, scope: string) => void
}

interface FamilyOut {
  readonly type: string
  readonly help: string
  readonly metric: MetricData
  readonly exact: boolean
}

/**
 * Serializes collected metrics. Label strings are cached per attributes object: the
 * store hands out the same object for a series on every scrape, so a scrape of
 * thousands of series formats each label set once in the process's life.
 */
export class Serializer {
  private readonly exactLabelCache = new WeakMap<Attributes, LabelSet>()
  private readonly translatedLabelCache = new WeakMap<Attributes, LabelSet>()
  /** Per histogram series: each `<name>_bucket{…le="…"…} ` up to the value (Python sorts `le` among the labels). */
  private readonly bucketPrefixes = new WeakMap<Attributes, { name: string, boundaries: readonly number[], prefixes: string[] }>()
  private readonly bucketLabels = new WeakMap<readonly number[], string[]>()
  private readonly translatedNames = new Map<string, string>()
  private readonly exactScopes: ReadonlySet<string>

  constructor (private readonly options: SerializerOptions = {}) {
    this.exactScopes = new Set(options.exactScopes ?? [STORE_SCOPE.name])
  }

  serialize (resourceMetrics: ResourceMetrics, scopeOrder: (scopeName: string) => number = () => 0): string {
    const families = new Map<string, FamilyOut>()
    const written = new Set<string>()
    const untyped = this.options.untyped?.() ?? new Set<string>()
    const scopes = [...resourceMetrics.scopeMetrics].sort((a, b) => scopeOrder(a.scope.name) - scopeOrder(b.scope.name))
    for (const scope of scopes) {
      const exact = this.exactScopes.has(scope.scope.name)
      for (const metric of scope.metrics) {
        if (metric.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) continue
        const name = exact ? familyName(metric) : this.translatedName(metric)
        // Two families writing one sample name would be duplicates that Prometheus drops (or a scrape it rejects).
        const samples = sampleNames(name, metric.dataPointType === DataPointType.HISTOGRAM)
        if (samples.some((sample) => written.has(sample))) {
          this.options.onConflict?.(name, scope.scope.name)
          continue
        }
        for (const sample of samples) written.add(sample)
        const type = untyped.has(name) ? 'untyped' : promType(metric)
        families.set(name, { type, help: metric.descriptor.description || name, metric, exact })
      }
    }
    const parts: string[] = []
    for (const [name, family] of families) {
      parts.push(`# HELP ${name} ${escapeHelp(family.help)}\n# TYPE ${name} ${family.type}\n`)
      this.samples(name, family, parts)
    }
    return parts.join('')
  }

  private translatedName (metric: MetricData): string {
    const kind = instrumentKind(metric)
    const id = `${metric.descriptor.name}\u0000${metric.descriptor.unit}\u0000${kind}`
    let name = this.translatedNames.get(id)
    if (name === undefined) {
      name = metricName(metric.descriptor.name, metric.descriptor.unit, kind)
      this.translatedNames.set(id, name)
    }
    return name
  }

  private labels (attributes: Attributes, exact: boolean): LabelSet {
    const cache = exact ? this.exactLabelCache : this.translatedLabelCache
    let cached = cache.get(attributes)
    if (cached === undefined) {
      const list = exact ? exactLabels(attributes) : translatedLabels(attributes)
      cached = { list, text: pairs(list) }
      cache.set(attributes, cached)
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

  private samples (name: string, family: FamilyOut, parts: string[]): void {
    const { metric, exact } = family
    // The store's series are unique by construction; translated ones may meet after translation: the first is kept.
    const seen = exact ? undefined : new Set<string>()
    if (metric.dataPointType === DataPointType.HISTOGRAM) {
      for (const point of metric.dataPoints) {
        const labels = this.labels(point.attributes, exact).text
        if (seen !== undefined) {
          if (seen.has(labels)) continue
          seen.add(labels)
        }
        const { boundaries, counts } = point.value.buckets
        const prefixes = this.prefixes(name, point.attributes, exact, boundaries)
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
      const labels = this.labels(point.attributes, exact).text
      if (seen !== undefined) {
        if (seen.has(labels)) continue
        seen.add(labels)
      }
      out += `${name}${labels === '' ? '' : `{${labels}}`} ${formatNumber(point.value)}\n`
    }
    parts.push(out)
  }

  private prefixes (name: string, attributes: Attributes, exact: boolean, boundaries: readonly number[]): string[] {
    const cached = this.bucketPrefixes.get(attributes)
    if (cached !== undefined && cached.name === name && cached.boundaries === boundaries) return cached.prefixes
    const labels = this.labels(attributes, exact).list
    let before = pairs(labels.filter(([label]) => label < 'le'))
    let after = pairs(labels.filter(([label]) => label > 'le'))
    before = before === '' ? '' : `${before},`
    after = after === '' ? '' : `,${after}`
    const prefixes = this.les(boundaries).map((le) => `${name}_bucket{${before}${le}${after}} `)
    this.bucketPrefixes.set(attributes, { name, boundaries, prefixes })
    return prefixes
  }
}
