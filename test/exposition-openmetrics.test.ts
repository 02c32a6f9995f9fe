// The two formats the serializer writes: text 0.0.4 with prometheus_client's `_created` gauge families,
// and OpenMetrics 1.0 checked by prometheus_client's own strict OpenMetrics parser (Debian's python3-prometheus-client).
import t from 'tap'
import { ValueType } from '@opentelemetry/api'
import { AggregationTemporality, DataPointType, type MetricData, type ResourceMetrics } from '@opentelemetry/sdk-metrics'
import { emptyResource } from '@opentelemetry/resources'
import { Serializer, type ExpositionFormat } from '../lib/exposition'
import { STORE_SCOPE } from '../lib/producer'
import type { Exemplar } from '../lib/store'
import { python } from './helpers/python'
import { promtoolCheckMetrics } from './helpers/prometheus'

const START: [number, number] = [1700000000, 250_000_000]
const common = { aggregationTemporality: AggregationTemporality.CUMULATIVE }
const descriptor = (name: string, description = 'd'): MetricData['descriptor'] => ({ name, description, unit: '', valueType: ValueType.DOUBLE })

function counter (name: string, points: Array<[Record<string, string>, number]>): MetricData {
  return { ...common, descriptor: descriptor(name, `Count of ${name} "quoted"`), dataPointType: DataPointType.SUM, isMonotonic: true, dataPoints: points.map(([attributes, value]) => ({ startTime: START, endTime: START, attributes, value })) }
}

function gauge (name: string, value: number): MetricData {
  return { ...common, descriptor: descriptor(name), dataPointType: DataPointType.GAUGE, dataPoints: [{ startTime: START, endTime: START, attributes: {}, value }] }
}

function histogram (name: string, attributes: Record<string, string>, exemplars?: Array<Exemplar | undefined>): MetricData {
  const value = { buckets: { boundaries: [0.1, 1], counts: [1, 0, 2] }, sum: 3.5, count: 3, ...(exemplars === undefined ? {} : { exemplars }) }
  return { ...common, descriptor: descriptor(name), dataPointType: DataPointType.HISTOGRAM, dataPoints: [{ startTime: START, endTime: START, attributes, value }] }
}

const METRICS: MetricData[] = [
  counter('django_http_requests_total_by_method', [[{ method: 'GET' }, 2], [{ method: 'POST' }, 1]]),
  counter('django_http_ajax_requests_total', [[{}, 0]]),
  counter('django_model_inserts', []),
  gauge('django_migrations_applied_total', 3),
  gauge('process_resident_memory_bytes', 1024),
  histogram('django_http_requests_latency_seconds_by_view_method', { view: '/claims', method: 'GET' }, [
    { labels: { trace_id: '4bf92f3577b34da6a3ce929d0e0e4736', span_id: '00f067aa0ba902b7' }, value: 0.067, timestamp: '1700000001.5' },
    undefined,
    { labels: { trace_id: '0af7651916cd43dd8448eb211c80319c', span_id: 'b7ad6b7169203331' }, value: 2.5 }
  ])
]

function write (format: ExpositionFormat, created = true): string {
  const serializer = new Serializer({ untyped: () => new Set(['django_migrations_applied_total']), created: () => created })
  const resourceMetrics: ResourceMetrics = { resource: emptyResource(), scopeMetrics: [{ scope: STORE_SCOPE, metrics: METRICS }] }
  return serializer.serialize(resourceMetrics, () => 0, format)
}

t.test('text 0.0.4: a `_created` gauge family after each counter and histogram with series, as prometheus_client writes it', async (t) => {
  const text = write('text')
  t.match(text, [
    '# HELP django_http_requests_total_by_method_total Count of django_http_requests_total_by_method "quoted"',
    '# TYPE django_http_requests_total_by_method_total counter',
    'django_http_requests_total_by_method_total{method="GET"} 2.0',
    'django_http_requests_total_by_method_total{method="POST"} 1.0',
    '# HELP django_http_requests_total_by_method_created Count of django_http_requests_total_by_method "quoted"',
    '# TYPE django_http_requests_total_by_method_created gauge',
    'django_http_requests_total_by_method_created{method="GET"} 1.70000000025e+09',
    'django_http_requests_total_by_method_created{method="POST"} 1.70000000025e+09',
    '# HELP django_http_ajax_requests_total'
  ].join('\n'))
  t.match(text, 'django_http_requests_latency_seconds_by_view_method_sum{method="GET",view="/claims"} 3.5\n# HELP django_http_requests_latency_seconds_by_view_method_created d\n# TYPE django_http_requests_latency_seconds_by_view_method_created gauge\ndjango_http_requests_latency_seconds_by_view_method_created{method="GET",view="/claims"} 1.70000000025e+09\n')
  t.notMatch(text, 'django_model_inserts_created', 'no `_created` family for a counter without series')
  t.notMatch(text, /migrations_applied_created|memory_bytes_created|# EOF|# UNIT|trace_id/, 'none for gauges; no OpenMetrics-only lines')
  t.notMatch(write('text', false), '_created', 'none when off')
  const lint = promtoolCheckMetrics(text)
  t.equal(lint.output, '', 'promtool check metrics prints nothing')
})

t.test('OpenMetrics 1.0: counter families without `_total`, `_created` per series, units, exemplars, `# EOF`', async (t) => {
  const text = write('openmetrics')
  t.match(text, [
    '# HELP django_http_requests_total_by_method Count of django_http_requests_total_by_method \\"quoted\\"',
    '# TYPE django_http_requests_total_by_method counter',
    'django_http_requests_total_by_method_total{method="GET"} 2.0',
    'django_http_requests_total_by_method_created{method="GET"} 1.70000000025e+09',
    'django_http_requests_total_by_method_total{method="POST"} 1.0',
    'django_http_requests_total_by_method_created{method="POST"} 1.70000000025e+09',
    '# HELP django_http_ajax_requests Count'
  ].join('\n'))
  t.match(text, '# TYPE django_migrations_applied_total unknown\ndjango_migrations_applied_total 3.0\n')
  t.match(text, '# TYPE process_resident_memory_bytes gauge\n# UNIT process_resident_memory_bytes bytes\n')
  t.notMatch(text, '# UNIT django_http_requests_latency_seconds_by_view_method', 'no unit that would not end the family name')
  t.match(text, 'django_http_requests_latency_seconds_by_view_method_bucket{le="0.1",method="GET",view="/claims"} 1.0 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",span_id="00f067aa0ba902b7"} 0.067 1700000001.5\n' +
    'django_http_requests_latency_seconds_by_view_method_bucket{le="1.0",method="GET",view="/claims"} 1.0\n' +
    'django_http_requests_latency_seconds_by_view_method_bucket{le="+Inf",method="GET",view="/claims"} 3.0 # {trace_id="0af7651916cd43dd8448eb211c80319c",span_id="b7ad6b7169203331"} 2.5\n' +
    'django_http_requests_latency_seconds_by_view_method_count{method="GET",view="/claims"} 3.0\n' +
    'django_http_requests_latency_seconds_by_view_method_sum{method="GET",view="/claims"} 3.5\n' +
    'django_http_requests_latency_seconds_by_view_method_created{method="GET",view="/claims"} 1.70000000025e+09\n')
  t.ok(text.endsWith('\n# EOF\n'), 'ends with # EOF')
  t.notMatch(write('openmetrics', false), '_created', 'none when off')

  // prometheus_client's OpenMetrics parser is strict: it rejects a missing EOF, a bad family name, a unit that does not end it, misplaced _created.
  const parsed = JSON.parse(await python(['-c', [
    'import sys, json',
    'from prometheus_client.openmetrics.parser import text_string_to_metric_families',
    'out = []',
    'for f in text_string_to_metric_families(sys.stdin.read()):',
    '    out.append([f.name, f.type, f.unit, [[s.name, s.labels, s.value, None if s.exemplar is None else s.exemplar.labels] for s in f.samples]])',
    'print(json.dumps(out))'
  ].join('\n')], text)) as Array<[string, string, string, Array<[string, Record<string, string>, number, Record<string, string> | null]>]>
  t.same(parsed.map(([name, type, unit]) => [name, type, unit]), [
    ['django_http_requests_total_by_method', 'counter', ''],
    ['django_http_ajax_requests', 'counter', ''],
    ['django_model_inserts', 'counter', ''],
    ['django_migrations_applied_total', 'unknown', ''],
    ['process_resident_memory_bytes', 'gauge', 'bytes'],
    ['django_http_requests_latency_seconds_by_view_method', 'histogram', '']
  ], 'families, types and units as prometheus_client reads them')
  const latency = parsed.at(-1)![3]
  t.same(latency[0]![3], { trace_id: '4bf92f3577b34da6a3ce929d0e0e4736', span_id: '00f067aa0ba902b7' }, 'the exemplar read back')
  t.equal(latency.at(-1)![0], 'django_http_requests_latency_seconds_by_view_method_created')
})

t.test('both formats write the same sample names and values', async (t) => {
  const samples = (text: string): string[] => text.split('\n').filter((line) => line !== '' && !line.startsWith('#')).map((line) => line.replace(/ # \{.*$/, '')).sort()
  t.same(samples(write('openmetrics')), samples(write('text')))
  t.same(samples(write('openmetrics', false)), samples(write('text', false)))
})
