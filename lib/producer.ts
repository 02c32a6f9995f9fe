import { ValueType } from '@opentelemetry/api'
import { hrTime } from '@opentelemetry/core'
import {
  AggregationTemporality, DataPointType,
  type CollectionResult, type MetricData, type MetricProducer, type ScopeMetrics
} from '@opentelemetry/sdk-metrics'
import { emptyResource } from '@opentelemetry/resources'
import { FAMILY_GROUPS } from './names'
import type { Family, HistogramCell, Store } from './store'

export const STORE_SCOPE = { name: 'upstream-metrics' }

const rank = new Map<string, number>()
FAMILY_GROUPS.forEach((group, g) => Object.values(group).forEach((spec, i) => rank.set(spec.name, g * 100 + i)))

/** Hands the store's cells to the OpenTelemetry reader as cumulative sums, gauges and histograms. */
export class StoreProducer implements MetricProducer {
  private readonly startTime = hrTime()

  constructor (private readonly store: Store) {}

  async collect (): Promise<CollectionResult> {
    return { resourceMetrics: { resource: emptyResource(), scopeMetrics: [this.scopeMetrics()] }, errors: [] }
  }

  scopeMetrics (): ScopeMetrics {
    const endTime = hrTime()
    const families = [...this.store.families].sort((a, b) => (rank.get(a.spec.name) ?? 1e6) - (rank.get(b.spec.name) ?? 1e6))
    const metrics: MetricData[] = []
    for (const family of families) {
      for (const name of family.names) {
        metrics.push(this.metric(family, name, endTime))
      }
    }
    return { scope: STORE_SCOPE, metrics }
  }

  private metric (family: Family, name: string, endTime: [number, number]): MetricData {
    const descriptor = { name, description: family.spec.help, unit: '', valueType: ValueType.DOUBLE }
    const startTime = this.startTime
    const aggregationTemporality = AggregationTemporality.CUMULATIVE
    if (family.spec.type === 'histogram') {
      const boundaries = family.bounds as number[]
      const dataPoints = []
      for (const cell of family.series() as IterableIterator<HistogramCell>) {
        dataPoints.push({
          startTime,
          endTime,
          attributes: cell.attributes,
          value: { buckets: { boundaries, counts: cell.counts.slice() }, sum: cell.sum, count: cell.value }
        })
      }
      return { descriptor, aggregationTemporality, dataPointType: DataPointType.HISTOGRAM, dataPoints }
    }
    const dataPoints = []
    for (const cell of family.series()) dataPoints.push({ startTime, endTime, attributes: cell.attributes, value: cell.value })
    if (family.spec.type === 'gauge') return { descriptor, aggregationTemporality, dataPointType: DataPointType.GAUGE, dataPoints }
    return { descriptor, aggregationTemporality, dataPointType: DataPointType.SUM, isMonotonic: true, dataPoints }
  }
}
