import type { Attributes, HrTime } from '@opentelemetry/api'
import { DataPointType, type Histogram, type MetricData, type ScopeMetrics } from '@opentelemetry/sdk-metrics'
import { ExactSum } from '../exact-sum'
import { FAMILY_GROUPS } from '../names'
import type { Exemplar, ExemplarBuckets } from '../store'

type Merge = 'sum' | 'min' | 'max'
const gaugeMerge = new Map<string, Merge>()
for (const group of FAMILY_GROUPS) for (const spec of Object.values(group)) if (spec.merge !== undefined) gaugeMerge.set(spec.name, spec.merge)

/** A family's merge rule by its exposed name: never-namespaced families (runtime, Celery) match as they are. */
function mergeRule (name: string, prefix: string): Merge {
  return gaugeMerge.get(name) ?? (prefix !== '' && name.startsWith(prefix) ? gaugeMerge.get(name.slice(prefix.length)) : undefined) ?? 'sum'
}

function attributesKey (attributes: Attributes): string {
  return JSON.stringify(Object.keys(attributes).sort().map((k) => [k, attributes[k]]))
}

/** Counters and histograms only grow; gauges (and up-down counters) are live values. */
function isMonotonic (metric: MetricData): boolean {
  return metric.dataPointType === DataPointType.HISTOGRAM || (metric.dataPointType === DataPointType.SUM && metric.isMonotonic)
}

interface Series {
  attributes: Attributes
  startTime: HrTime
  endTime: HrTime
  /** A counter's exact sum, or a gauge's merged value. */
  value: ExactSum | number
  histogram?: { boundaries: number[], counts: number[], count: number, sum: ExactSum, exemplars?: Array<Exemplar | undefined> }
}

interface MetricTotal { metric: MetricData, rule: Merge, series: Map<string, Series> }

/**
 * Several collections added up. Counters and histogram sums add exactly (see ExactSum), so a total is the
 * same whatever order its parts arrive in and never lower than an earlier total of parts that only grew.
 * Gauges merge by their family's rule, in the order the collections are added.
 */
export class Totals {
  private readonly scopes = new Map<string, { scope: ScopeMetrics['scope'], metrics: Map<string, MetricTotal> }>()
  private readonly prefix: string

  constructor (namespace = '') {
    this.prefix = namespace === '' ? '' : `${namespace}_`
  }

  /** Adds a collection; `monotonicOnly` keeps only its counters and histograms. */
  add (collection: ScopeMetrics[], monotonicOnly = false): void {
    for (const scopeMetrics of collection) {
      for (const metric of scopeMetrics.metrics) {
        if (metric.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM || (monotonicOnly && !isMonotonic(metric))) continue
        const total = this.metricTotal(scopeMetrics.scope, metric)
        for (const point of metric.dataPoints as any[]) this.addPoint(total, point)
      }
    }
  }

  /** Adds another Totals' counters and histograms (and gauges, by rule) without changing it. */
  addTotals (other: Totals): void {
    for (const { scope, metrics } of other.scopes.values()) {
      for (const { metric, series } of metrics.values()) {
        const total = this.metricTotal(scope, metric)
        for (const [key, from] of series) {
          const into = total.series.get(key)
          if (into === undefined) {
            total.series.set(key, {
              ...from,
              value: typeof from.value === 'number' ? from.value : from.value.clone(),
              histogram: from.histogram === undefined ? undefined : { ...from.histogram, counts: from.histogram.counts.slice(), sum: from.histogram.sum.clone(), exemplars: from.histogram.exemplars?.slice() }
            })
            continue
          }
          into.startTime = earliest(into.startTime, from.startTime)
          if (into.histogram !== undefined && from.histogram !== undefined) {
            addCounts(into.histogram.counts, from.histogram.counts)
            into.histogram.count += from.histogram.count
            into.histogram.sum.addSum(from.histogram.sum)
            into.histogram.exemplars = latestExemplars(into.histogram.exemplars, from.histogram.exemplars)
          } else if (typeof into.value !== 'number' && typeof from.value !== 'number') {
            into.value.addSum(from.value)
          } else {
            into.value = mergeGauge(total.rule, into.value as number, from.value as number)
          }
        }
      }
    }
  }

  get seriesCount (): number {
    let count = 0
    for (const { metrics } of this.scopes.values()) for (const { series } of metrics.values()) count += series.size
    return count
  }

  toScopeMetrics (): ScopeMetrics[] {
    return [...this.scopes.values()].map(({ scope, metrics }) => ({
      scope,
      metrics: [...metrics.values()].map(({ metric, series }) => ({
        ...metric,
        dataPoints: [...series.values()].map(({ attributes, startTime, endTime, value, histogram }) => ({
          attributes,
          startTime,
          endTime,
          value: histogram === undefined
            ? (typeof value === 'number' ? value : value.value())
            : {
                buckets: { boundaries: histogram.boundaries, counts: histogram.counts.slice() },
                count: histogram.count,
                sum: histogram.sum.value(),
                ...(histogram.exemplars === undefined ? {} : { exemplars: histogram.exemplars.slice() })
              }
        }))
      }) as MetricData)
    }))
  }

  private metricTotal (scope: ScopeMetrics['scope'], metric: MetricData): MetricTotal {
    let entry = this.scopes.get(scope.name)
    if (entry === undefined) {
      entry = { scope, metrics: new Map() }
      this.scopes.set(scope.name, entry)
    }
    let total = entry.metrics.get(metric.descriptor.name)
    if (total === undefined) {
      const rule = metric.dataPointType === DataPointType.GAUGE ? mergeRule(metric.descriptor.name, this.prefix) : 'sum'
      total = { metric: { ...metric, dataPoints: [] } as MetricData, rule, series: new Map() }
      entry.metrics.set(metric.descriptor.name, total)
    }
    return total
  }

  private addPoint (total: MetricTotal, point: any): void {
    const key = attributesKey(point.attributes)
    const seen = total.series.get(key)
    if (seen !== undefined) seen.startTime = earliest(seen.startTime, point.startTime)
    const monotonic = isMonotonic(total.metric)
    if (total.metric.dataPointType === DataPointType.HISTOGRAM) {
      const { buckets, count, sum, exemplars } = point.value as Histogram & ExemplarBuckets
      if (seen === undefined) {
        total.series.set(key, {
          attributes: point.attributes,
          startTime: point.startTime,
          endTime: point.endTime,
          value: 0,
          histogram: { boundaries: buckets.boundaries, counts: buckets.counts.slice(), count, sum: ExactSum.of(sum ?? 0), exemplars: latestExemplars(undefined, exemplars) }
        })
      } else {
        addCounts(seen.histogram!.counts, buckets.counts)
        seen.histogram!.count += count
        seen.histogram!.sum.add(sum ?? 0)
        seen.histogram!.exemplars = latestExemplars(seen.histogram!.exemplars, exemplars)
      }
    } else if (seen === undefined) {
      total.series.set(key, { attributes: point.attributes, startTime: point.startTime, endTime: point.endTime, value: monotonic ? ExactSum.of(point.value) : point.value })
    } else if (typeof seen.value !== 'number') {
      seen.value.add(point.value)
    } else {
      seen.value = mergeGauge(total.rule, seen.value, point.value)
    }
  }
}

/** Per bucket, the most recent of two workers' exemplars (as each worker keeps its most recent). */
function latestExemplars (a: Array<Exemplar | undefined> | undefined, b: ReadonlyArray<Exemplar | null | undefined> | undefined): Array<Exemplar | undefined> | undefined {
  if (b == null) return a
  // Over IPC (JSON) a bucket without an exemplar arrives as null: it holds none.
  const merged = a ?? new Array<Exemplar | undefined>(b.length).fill(undefined)
  for (let i = 0; i < b.length; i++) {
    const [mine, theirs] = [merged[i], b[i]]
    if (theirs != null && (mine === undefined || Number(theirs.timestamp ?? 0) > Number(mine.timestamp ?? 0))) merged[i] = theirs
  }
  return merged
}

/** A series counted by several workers started with the first of them (its `_created`). */
function earliest (a: HrTime, b: HrTime): HrTime {
  return b[0] < a[0] || (b[0] === a[0] && b[1] < a[1]) ? b : a
}

function addCounts (into: number[], from: readonly number[]): void {
  for (let i = 0; i < from.length; i++) into[i] = (into[i] ?? 0) + from[i]!
}

function mergeGauge (rule: Merge, a: number, b: number): number {
  return rule === 'sum' ? a + b : Math[rule](a, b)
}

/** Adds several workers' collections into one, in the order given: sums and histograms add, gauges follow the table's merge rule. */
export function mergeScopeMetrics (collections: ScopeMetrics[][], namespace = ''): ScopeMetrics[] {
  const totals = new Totals(namespace)
  for (const collection of collections) totals.add(collection)
  return totals.toScopeMetrics()
}

/**
 * The primary's state: each live worker's latest collection, and the counters and histograms of the
 * workers that are gone (prometheus_client's multiprocess mode keeps a dead process's counts too).
 * Memory: one collection per live worker, plus one series per distinct series the gone workers had.
 */
export class ClusterTotals {
  private readonly latest = new Map<number, ScopeMetrics[]>()
  private readonly retained = new Totals()
  private readonly members = new Set<number>()

  /** A worker that runs the plugin: rounds wait for it from now on. */
  join (workerId: number): void {
    this.members.add(workerId)
  }

  isMember (workerId: number): boolean {
    return this.members.has(workerId)
  }

  /** A worker's collection; a worker's collections arrive in the order it made them, so each one holds at least the counts of the one before. */
  record (workerId: number, collection: ScopeMetrics[]): void {
    this.members.add(workerId)
    this.latest.set(workerId, collection)
  }

  /** A worker is gone: its last collection's counters and histograms stay in the totals, its gauges leave with it. */
  leave (workerId: number): void {
    const last = this.latest.get(workerId)
    if (last !== undefined) this.retained.add(last, true)
    this.latest.delete(workerId)
    this.members.delete(workerId)
  }

  /** Live workers in a fixed order (by id), then the retained counts: the same parts always add up the same way. */
  answer (namespace = ''): ScopeMetrics[] {
    const totals = new Totals(namespace)
    for (const id of [...this.latest.keys()].sort((a, b) => a - b)) totals.add(this.latest.get(id)!)
    totals.addTotals(this.retained)
    return totals.toScopeMetrics()
  }

  get sizes (): { live: number, members: number, retainedSeries: number } {
    return { live: this.latest.size, members: this.members.size, retainedSeries: this.retained.seriesCount }
  }
}
