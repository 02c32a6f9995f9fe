import type { Attributes, HrTime } from '@opentelemetry/api'
import { DataPointType, type Histogram, type MetricData, type ResourceMetrics } from '@opentelemetry/sdk-metrics'
import { STORE_SCOPE } from './producer'
import type { Exemplar, ExemplarBuckets } from './store'
import { labelName, labelValue, metricName, sampleNames, UNITS, type InstrumentKind } from './translation'

/**
 * The two formats, written the way prometheus_client writes them (so the output of a django
 * app and of this plugin compare line by line): buckets before `_count`/`_sum`, labels sorted,
 * `le` and values in Python's float notation, no `target_info`, no `otel_scope_*` labels.
 * - Text 0.0.4: counters named `…_total` on their TYPE line, `_created` as a gauge family after
 *   its counter or histogram, no `# UNIT`.
 * - OpenMetrics 1.0: counter families named without `_total` (their samples keep it), `_created`
 *   after each series' samples, `# UNIT` when the family name ends with a unit word, exemplars on
 *   buckets, `# EOF`. Prometheus stores the same series from both.
 */
export type ExpositionFormat = 'text' | 'openmetrics'
export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'
export const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8'
export const CONTENT_TYPES: Readonly<Record<ExpositionFormat, string>> = { text: CONTENT_TYPE, openmetrics: OPENMETRICS_CONTENT_TYPE }

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

function escapeHelp (help: string, format: ExpositionFormat): string {
  const escaped = help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
  return format === 'openmetrics' ? escaped.replace(/"/g, '\\"') : escaped
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

/** Seconds since the epoch of an OpenTelemetry time. */
function seconds (time: HrTime): number {
  return time[0] + time[1] / 1e9
}

/** `unit` when the name's last word is one (`_seconds`, `_bytes`): OpenMetrics requires the unit to end the family name. */
const UNIT_WORDS = new Set(Object.values(UNITS).filter((word) => word !== ''))
function unitOf (family: string): string | undefined {
  const word = family.slice(family.lastIndexOf('_') + 1)
  return UNIT_WORDS.has(word) && word !== family ? word : undefined
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
  /** Scopes whose counters and histograms get `_created` series (each point's start time); none unless given. */
  created?: (scope: string) => boolean
  /** Told about a family left out because an earlier one already writes one of its sample names. */
  onConflict?: (family: string, scope: string) => void
}

interface FamilyOut {
  /** The name on text 0.0.4's TYPE line (a counter's ends with `_total`). */
  readonly name: string
  /** The name before the sample suffixes: OpenMetrics's family name, and the base of `_created`. */
  readonly base: string
  readonly type: string
  readonly help: string
  readonly metric: MetricData
  readonly exact: boolean
  readonly created: boolean
}

/** ` # {trace_id="…",span_id="…"} value timestamp`, the suffix of an OpenMetrics bucket line. */
export function exemplarSuffix (exemplar: Exemplar): string {
  const labels = Object.entries(exemplar.labels).map(([name, value]) => `${name}="${escapeLabelValue(value)}"`).join(',')
  const time = exemplar.timestamp === undefined ? '' : ` ${exemplar.timestamp}`
  return ` # {${labels}} ${formatNumber(exemplar.value)}${time}`
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
  /** `_created` values: the store keeps one start time object per series for its life. */
  private readonly createdValues = new WeakMap<HrTime, string>()
  private readonly exactScopes: ReadonlySet<string>

  constructor (private readonly options: SerializerOptions = {}) {
    this.exactScopes = new Set(options.exactScopes ?? [STORE_SCOPE.name])
  }

  serialize (resourceMetrics: ResourceMetrics, scopeOrder: (scopeName: string) => number = () => 0, format: ExpositionFormat = 'text'): string {
    const parts: string[] = []
    for (const family of this.families(resourceMetrics, scopeOrder)) {
      if (format === 'openmetrics') this.openMetricsFamily(family, parts)
      else this.textFamily(family, parts)
    }
    if (format === 'openmetrics') parts.push('# EOF\n')
    return parts.join('')
  }

  /** The families to write, in order; the same whatever the format, so that both give Prometheus the same series. */
  private families (resourceMetrics: ResourceMetrics, scopeOrder: (scopeName: string) => number): FamilyOut[] {
    const families: FamilyOut[] = []
    const written = new Set<string>()
    const untyped = this.options.untyped?.() ?? new Set<string>()
    const scopes = [...resourceMetrics.scopeMetrics].sort((a, b) => scopeOrder(a.scope.name) - scopeOrder(b.scope.name))
    for (const scope of scopes) {
      const exact = this.exactScopes.has(scope.scope.name)
      const createdScope = this.options.created?.(scope.scope.name) ?? false
      for (const metric of scope.metrics) {
        if (metric.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) continue
        const name = exact ? familyName(metric) : this.translatedName(metric)
        const type = untyped.has(name) ? 'untyped' : promType(metric)
        const base = type === 'counter' ? name.slice(0, -'_total'.length) : name
        const created = createdScope && (type === 'counter' || type === 'histogram')
        // Two families writing one name would be duplicates that Prometheus drops (or a scrape it rejects);
        // an OpenMetrics family name is reserved too.
        const names = sampleNames(name, type === 'histogram')
        if (base !== name) names.push(base)
        if (created) names.push(`${base}_created`)
        if (names.some((sample) => written.has(sample))) {
          this.options.onConflict?.(name, scope.scope.name)
          continue
        }
        for (const sample of names) written.add(sample)
        families.push({ name, base, type, help: metric.descriptor.description || name, metric, exact, created })
      }
    }
    return families
  }

  private textFamily (family: FamilyOut, parts: string[]): void {
    const { name, base, type, help } = family
    parts.push(`# HELP ${name} ${escapeHelp(help, 'text')}\n# TYPE ${name} ${type}\n`)
    this.samples(family, parts, 'text')
    if (!family.created) return
    // As prometheus_client: no `_created` family while the family has no series.
    if (family.metric.dataPoints.length === 0) return
    let out = `# HELP ${base}_created ${escapeHelp(help, 'text')}\n# TYPE ${base}_created gauge\n`
    this.forEachPoint(family, (point, braces) => { out += `${base}_created${braces} ${this.createdValue(point.startTime)}\n` })
    parts.push(out)
  }

  private openMetricsFamily (family: FamilyOut, parts: string[]): void {
    const { base, type, help } = family
    const unit = unitOf(base)
    parts.push(`# HELP ${base} ${escapeHelp(help, 'openmetrics')}\n# TYPE ${base} ${type === 'untyped' ? 'unknown' : type}\n${unit === undefined ? '' : `# UNIT ${base} ${unit}\n`}`)
    this.samples(family, parts, 'openmetrics')
  }

  private createdValue (startTime: HrTime): string {
    let value = this.createdValues.get(startTime)
    if (value === undefined) {
      value = formatNumber(seconds(startTime))
      this.createdValues.set(startTime, value)
    }
    return value
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

  /**
   * Calls `write` with each point and its `{labels}` ('' without labels). The store's series are
   * unique by construction; translated ones may meet after translation: the first is kept.
   */
  private forEachPoint (family: FamilyOut, write: (point: MetricData['dataPoints'][number], braces: string) => void): void {
    const seen = family.exact ? undefined : new Set<string>()
    for (const point of family.metric.dataPoints) {
      const labels = this.labels(point.attributes, family.exact).text
      if (seen !== undefined) {
        if (seen.has(labels)) continue
        seen.add(labels)
      }
      write(point, labels === '' ? '' : `{${labels}}`)
    }
  }

  private samples (family: FamilyOut, parts: string[], format: ExpositionFormat): void {
    const { name, base, metric, exact } = family
    // OpenMetrics puts each series' `_created` right after its samples.
    const created = family.created && format === 'openmetrics'
    let out = ''
    if (metric.dataPointType === DataPointType.HISTOGRAM) {
      this.forEachPoint(family, (point, braces) => {
        const value = point.value as Histogram & ExemplarBuckets
        const { boundaries, counts } = value.buckets
        const prefixes = this.prefixes(name, point.attributes, exact, boundaries)
        const exemplars = format === 'openmetrics' ? value.exemplars : undefined
        let cumulative = 0
        for (let i = 0; i < prefixes.length; i++) {
          cumulative += counts[i] ?? 0
          const exemplar = exemplars?.[i]
          out += prefixes[i]! + formatNumber(cumulative) + (exemplar === undefined ? '\n' : exemplarSuffix(exemplar) + '\n')
        }
        out += `${name}_count${braces} ${formatNumber(value.count)}\n${name}_sum${braces} ${formatNumber(value.sum ?? 0)}\n`
        if (created) out += `${base}_created${braces} ${this.createdValue(point.startTime)}\n`
        parts.push(out)
        out = ''
      })
      return
    }
    this.forEachPoint(family, (point, braces) => {
      out += `${name}${braces} ${formatNumber(point.value as number)}\n`
      if (created) out += `${base}_created${braces} ${this.createdValue(point.startTime)}\n`
    })
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
