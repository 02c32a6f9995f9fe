import { ValueType } from '@opentelemetry/api'
import { hrTime } from '@opentelemetry/core'
import {
  AggregationTemporality, DataPointType,
  type CollectionResult, type Histogram, type MetricData, type MetricProducer, type ScopeMetrics
} from '@opentelemetry/sdk-metrics'
import { emptyResource } from '@opentelemetry/resources'
import { FAMILY_GROUPS } from './names'
import type { ExemplarBuckets, Family, HistogramCell, Store } from './store'

export const STORE_SCOPE = { name: 'upstream-metrics' }

/** One stream a reader sees of a family: its name, unit, and whether a counter is monotonic. */
export interface Stream {
  readonly name: string
  readonly unit: string
  readonly monotonic: boolean
}

const rank = new Map<string, number>()
FAMILY_GROUPS.forEach((group, g) => Object.values(group).forEach((spec, i) => rank.set(spec.name, g * 100 + i)))

/** Hands the store's cells to the OpenTelemetry reader as cumulative sums, gauges and histograms. */
export class StoreProducer implements MetricProducer {
  constructor (private readonly store: Store) {}

  async collect (): Promise<CollectionResult> {
    return { resourceMetrics: { resource: emptyResource(), scopeMetrics: [this.scopeMetrics()] }, errors: [] }
  }

  scopeMetrics (): ScopeMetrics {
    const endTime = hrTime()
    const families = [...this.store.families].sort((a, b) => (rank.get(a.spec.name) ?? 1e6) - (rank.get(b.spec.name) ?? 1e6))
    const metrics: MetricData[] = []
    for (const family of families) {
      for (const stream of this.streams(family)) {
        metrics.push(this.metric(family, stream, endTime))
      }
    }
    return { scope: STORE_SCOPE, metrics }
  }

  /** The /metrics view: every exposed name, no unit, counters monotonic. */
  protected streams (family: Family): readonly Stream[] {
    return family.names.map((name) => ({ name, unit: '', monotonic: true }))
  }

  private metric (family: Family, stream: Stream, endTime: [number, number]): MetricData {
    const descriptor = { name: stream.name, description: family.spec.help, unit: stream.unit, valueType: ValueType.DOUBLE }
    const aggregationTemporality = AggregationTemporality.CUMULATIVE
    if (family.spec.type === 'histogram') {
      const boundaries = family.bounds as number[]
      const dataPoints = []
      for (const cell of family.series() as IterableIterator<HistogramCell>) {
        const buckets = { boundaries, counts: cell.counts.slice() }
        const value: Histogram & ExemplarBuckets = cell.exemplars === undefined
          ? { buckets, sum: cell.sum, count: cell.value }
          : { buckets, sum: cell.sum, count: cell.value, exemplars: cell.exemplars.slice() }
        dataPoints.push({ startTime: cell.startTime, endTime, attributes: cell.attributes, value })
      }
      return { descriptor, aggregationTemporality, dataPointType: DataPointType.HISTOGRAM, dataPoints }
    }
    const dataPoints = []
    for (const cell of family.series()) dataPoints.push({ startTime: cell.startTime, endTime, attributes: cell.attributes, value: cell.value })
    if (family.spec.type === 'gauge') return { descriptor, aggregationTemporality, dataPointType: DataPointType.GAUGE, dataPoints }
    return { descriptor, aggregationTemporality, dataPointType: DataPointType.SUM, isMonotonic: stream.monotonic, dataPoints }
  }
}
