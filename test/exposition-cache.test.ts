import t from 'tap'
import { ValueType } from '@opentelemetry/api'
import { AggregationTemporality, DataPointType, type MetricData, type ResourceMetrics } from '@opentelemetry/sdk-metrics'
import { emptyResource } from '@opentelemetry/resources'
import { formatNumber, Serializer } from '../lib/exposition'

function histogram (name: string, attributes: Record<string, string>, boundaries: number[], counts: number[]): MetricData {
  return {
    descriptor: { name, description: 'h', unit: '', valueType: ValueType.DOUBLE },
    aggregationTemporality: AggregationTemporality.CUMULATIVE,
    dataPointType: DataPointType.HISTOGRAM,
    dataPoints: [{ startTime: [0, 0], endTime: [0, 0], attributes, value: { buckets: { boundaries, counts }, sum: 1.5, count: counts.reduce((a, b) => a + b, 0) } }]
  }
}

function text (serializer: Serializer, metrics: MetricData[]): string {
  const resourceMetrics: ResourceMetrics = { resource: emptyResource(), scopeMetrics: [{ scope: { name: 's' }, metrics }] }
  return serializer.serialize(resourceMetrics)
}

t.test('cached bucket lines follow the name and boundaries a series is written with', async (t) => {
  const serializer = new Serializer()
  const attributes = { view: 'v', method: 'GET' }
  const first = text(serializer, [histogram('a_seconds', attributes, [0.1, 1], [1, 0, 2])])
  t.match(first, 'a_seconds_bucket{le="0.1",method="GET",view="v"} 1.0\na_seconds_bucket{le="1.0",method="GET",view="v"} 1.0\na_seconds_bucket{le="+Inf",method="GET",view="v"} 3.0\n')
  // The same attributes object under another name (an alias) and other bounds must not reuse the cached lines.
  const second = text(serializer, [histogram('a_seconds', attributes, [0.1, 1], [1, 0, 2]), histogram('b_seconds', attributes, [5], [4, 1])])
  t.match(second, 'b_seconds_bucket{le="5.0",method="GET",view="v"} 4.0\nb_seconds_bucket{le="+Inf",method="GET",view="v"} 5.0\n')
  t.match(second, 'a_seconds_bucket{le="+Inf",method="GET",view="v"} 3.0\n')
  t.equal(text(serializer, [histogram('a_seconds', attributes, [0.1, 1], [1, 0, 2])]), first, 'a later scrape writes the same text')
})

t.test('numbers are written as Python writes floats', async (t) => {
  const cases: Array<[number, string]> = [
    [0, '0.0'], [1, '1.0'], [42, '42.0'], [999999, '999999.0'], [1e6, '1e+06'], [1048576, '1.048576e+06'],
    [0.25, '0.25'], [-3, '-3.0'], [1e16, '1e+16'], [0.00001, '1e-05'], [Infinity, '+Inf'], [NaN, 'NaN']
  ]
  for (const [value, expected] of cases) t.equal(formatNumber(value), expected, String(value))
})
