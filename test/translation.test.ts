// The OTLP → Prometheus name translation, on prometheus/otlptranslator's documented examples
// (UnderscoreEscapingWithSuffixes) and the cases this plugin adds for reserved label names.
import t from 'tap'
import { isReservedKey, labelName, metricName } from '../lib/translation'

t.test('metric names: separators, unit words, _total and _ratio', async (t) => {
  const cases: Array<[string, string, Parameters<typeof metricName>[2], string]> = [
    ['http.server.duration', 's', 'histogram', 'http_server_duration_seconds'],
    ['db.client.operation.duration', 's', 'histogram', 'db_client_operation_duration_seconds'],
    ['requests.count', '1', 'counter', 'requests_count_total'],
    ['memory.usage', 'By', 'gauge', 'memory_usage_bytes'],
    ['system.network.io', 'By/s', 'counter', 'system_network_io_bytes_per_second_total'],
    ['queue.latency', 'ms', 'gauge', 'queue_latency_milliseconds'],
    ['cpu.utilization', '1', 'gauge', 'cpu_utilization_ratio'],
    ['pool.ratio.used', '1', 'gauge', 'pool_used_ratio'],
    ['pool.usage', '1', 'updowncounter', 'pool_usage'],
    ['db.client.connection.count', '{connection}', 'updowncounter', 'db_client_connection_count'],
    ['requests_total.by_kind', '{request}', 'counter', 'requests_by_kind_total'],
    ['process_cpu_seconds_total', 's', 'counter', 'process_cpu_seconds_total'],
    ['nodejs_eventloop_lag_p99_seconds', '', 'gauge', 'nodejs_eventloop_lag_p99_seconds'],
    ['disk.io', 'KiBy', 'counter', 'disk_io_kibibytes_total'],
    ['2xx.responses', '', 'counter', '_2xx_responses_total'],
    ['a__b..c', '', 'gauge', 'a_b_c'],
    ['rpc:calls', '', 'counter', 'rpc:calls_total']
  ]
  for (const [name, unit, kind, expected] of cases) t.equal(metricName(name, unit, kind), expected, `${name} (${unit}, ${kind})`)
})

t.test('label names: sanitized, digits and reserved names get key_', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['http.method', 'http_method', false],
    ['http..method', 'http_method', false],
    ['123invalid', 'key_123invalid', false],
    ['_private', '_private', false],
    ['__name__', 'key_name', true],
    ['__meta.x__', 'key_meta_x', true],
    ['le', 'key_le', true],
    ['quantile', 'key_quantile', true],
    ['...', 'key_', true],
    ['key_le', 'key_le', false],
    ['LE', 'LE', false]
  ]
  for (const [key, label, reserved] of cases) {
    t.equal(labelName(key), label, key)
    t.equal(isReservedKey(key), reserved, `${key} reserved: ${reserved}`)
  }
})
