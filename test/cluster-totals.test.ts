// The primary's arithmetic (lib/cluster/totals.ts, lib/cluster/wire.ts, lib/exact-sum.ts) on its own: the real classes, fed collections
// shaped as the workers send them. The cluster tests (cluster.test.ts, replicas.test.ts) run it with real workers.
import t from 'tap'
import { ValueType } from '@opentelemetry/api'
import { AggregationTemporality, DataPointType, type MetricData, type ScopeMetrics } from '@opentelemetry/sdk-metrics'
import { ClusterTotals, fromWire, mergeScopeMetrics, toWire } from '../lib/cluster'
import { ExactSum } from '../lib/exact-sum'

const time: [number, number] = [0, 0]
const point = (value: unknown, attributes = {}) => ({ attributes, startTime: time, endTime: time, value })
const descriptor = (name: string) => ({ name, description: name, unit: '', valueType: ValueType.DOUBLE })

function counter (name: string, value: number): MetricData {
  return { descriptor: descriptor(name), aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPointType: DataPointType.SUM, isMonotonic: true, dataPoints: [point(value)] } as MetricData
}
function gauge (name: string, value: number, attributes = {}): MetricData {
  return { descriptor: descriptor(name), aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPointType: DataPointType.GAUGE, dataPoints: [point(value, attributes)] } as MetricData
}
function histogram (name: string, sum: number, counts: number[]): MetricData {
  const value = { buckets: { boundaries: [1], counts }, count: counts.reduce((a, b) => a + b, 0), sum }
  return { descriptor: descriptor(name), aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPointType: DataPointType.HISTOGRAM, dataPoints: [point(value)] } as MetricData
}
const collection = (...metrics: MetricData[]): ScopeMetrics[] => [{ scope: { name: 'upstream-metrics' }, metrics }]

/** name → value (histograms: name_sum and name_count) of an answer. */
function values (answer: ScopeMetrics[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const s of answer) {
    for (const m of s.metrics) {
      for (const p of m.dataPoints as any[]) {
        const suffix = Object.values(p.attributes).join(',')
        const name = suffix === '' ? m.descriptor.name : `${m.descriptor.name}{${suffix}}`
        if (m.dataPointType === DataPointType.HISTOGRAM) {
          out[`${name}_sum`] = p.value.sum
          out[`${name}_count`] = p.value.count
        } else out[name] = p.value
      }
    }
  }
  return out
}

/** A seeded generator, so that a failure can be replayed. */
function random (seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    return seed / 2 ** 31
  }
}

t.test('ExactSum: the correctly rounded sum, whatever the order', async (t) => {
  const sumOf = (xs: number[]) => { const s = new ExactSum(); for (const x of xs) s.add(x); return s.value() }
  t.equal(0.1 + 0.2 + 0.3, 0.6000000000000001, 'plain addition, in this order')
  t.equal(0.3 + 0.2 + 0.1, 0.6, 'plain addition, in that order')
  t.equal(sumOf([0.1, 0.2, 0.3]), 0.6)
  t.equal(sumOf([0.3, 0.1, 0.2]), 0.6)
  t.equal(sumOf([1e100, 1, -1e100]), 1, 'nothing absorbed')
  t.equal(sumOf([2 ** 53, 1, 1]), 2 ** 53 + 2, 'integers past 2^53')
  t.equal(sumOf([1, Infinity]), Infinity)
  t.ok(Number.isNaN(sumOf([1, NaN])))
  const rand = random(7)
  const xs = Array.from({ length: 200 }, () => rand() * 10 ** Math.floor(rand() * 8 - 4))
  const expected = sumOf(xs)
  for (let i = 0; i < 20; i++) {
    const shuffled = xs.slice().sort(() => rand() - 0.5)
    const split = new ExactSum()
    const other = new ExactSum()
    shuffled.forEach((x, j) => (j % 2 === 0 ? split : other).add(x))
    split.addSum(other)
    t.equal(split.value(), expected, `shuffle ${i}: same sum, also grouped in two halves`)
  }
})

t.test('a dead worker keeps its counters and histograms in the totals; its gauges leave', async (t) => {
  const totals = new ClusterTotals()
  totals.record(1, collection(counter('requests', 5), histogram('latency', 0.5, [3, 2]), gauge('memory', 7)))
  totals.record(2, collection(counter('requests', 3), histogram('latency', 0.25, [1, 0]), gauge('memory', 2)))
  t.same(values(totals.answer()), { requests: 8, latency_sum: 0.75, latency_count: 6, memory: 9 })
  totals.leave(1)
  t.same(values(totals.answer()), { requests: 8, latency_sum: 0.75, latency_count: 6, memory: 2 })
  totals.leave(2)
  t.same(values(totals.answer()), { requests: 8, latency_sum: 0.75, latency_count: 6 }, 'every worker gone: the counts stay, no gauge')
})

t.test('answers never decrease across worker deaths, restarts and arrival orders (plain sums do)', async (t) => {
  const rand = random(42)
  const totals = new ClusterTotals()
  // The naive reference: what the primary did before, the sum of the collections in the order they arrive.
  let naiveRetained = 0
  const live = new Map<number, { cpu: number, latencySum: number, count: number }>()
  let nextId = 1
  for (let i = 0; i < 4; i++) live.set(nextId++, { cpu: 0, latencySum: 0, count: 0 })
  let previous: Record<string, number> = {}
  let naivePrevious = 0
  let naiveDrops = 0
  let deaths = 0
  for (let round = 0; round < 3000; round++) {
    // Busy rounds and idle ones (between two idle scrapes, only the order of the additions changes).
    const busy = rand() < 0.5
    for (const state of live.values()) {
      // CPU seconds and latency sums: fractions with every digit used, as a real process reports them.
      if (busy && rand() < 0.7) state.cpu += rand() * 0.01
      if (busy && rand() < 0.7) { state.latencySum += rand() * 0.3; state.count++ }
    }
    const order = [...live.keys()].sort(() => rand() - 0.5)
    for (const id of order) {
      const s = live.get(id)!
      totals.record(id, collection(counter('cpu', s.cpu), histogram('latency', s.latencySum, [s.count, 0])))
    }
    const answer = values(totals.answer())
    for (const [name, value] of Object.entries(previous)) {
      if (!(answer[name]! >= value)) t.fail(`round ${round}: ${name} went down from ${value} to ${answer[name]}`)
    }
    previous = answer
    const naive = order.reduce((sum, id) => sum + live.get(id)!.cpu, naiveRetained)
    if (naive < naivePrevious) naiveDrops++
    naivePrevious = naive
    if (rand() < 0.1) {
      const victim = [...live.keys()][Math.floor(rand() * live.size)]!
      totals.leave(victim)
      naiveRetained += live.get(victim)!.cpu
      live.delete(victim)
      live.set(nextId++, { cpu: 0, latencySum: 0, count: 0 })
      deaths++
    }
  }
  t.ok(deaths > 200, `${deaths} workers died and were replaced`)
  t.ok(naiveDrops > 0, `the scenario is one where plain sums go down (${naiveDrops} times)`)
  t.pass('no total ever went down')
})

t.test('memory stays bounded over many restarts', async (t) => {
  const totals = new ClusterTotals()
  for (let id = 1; id <= 2000; id++) {
    totals.join(id)
    totals.record(id, collection(counter('requests', 1), histogram('latency', 0.1, [1, 0]), gauge('memory', 10)))
    if (id > 4) totals.leave(id - 4)
  }
  t.same(totals.sizes, { live: 4, members: 4, retainedSeries: 2 }, 'four live collections, one retained series per counter or histogram')
  // 2000 × the double nearest 0.1 is 200.0000000000000111…, whose nearest double is 200.
  t.same(values(totals.answer()), { requests: 2000, latency_sum: 200, latency_count: 2000, memory: 40 })
})

t.test('non-finite values travel as markers and come back', async (t) => {
  const sent = collection(gauge('g', Infinity, { v: 'inf' }), gauge('h', -Infinity), gauge('n', NaN), histogram('x', Infinity, [1, 0]), counter('c', 1))
  const received = fromWire(JSON.parse(JSON.stringify(toWire(sent))))
  const v = values(received)
  t.equal(v['g{inf}'], Infinity)
  t.equal(v.h, -Infinity)
  t.ok(Number.isNaN(v.n))
  t.equal(v.x_sum, Infinity)
  t.equal(v.c, 1)
  const finite = collection(counter('c', 1))
  t.equal(toWire(finite), finite, 'nothing to encode: no copy')
})

t.test('gauge merge rules hold whatever the namespace', async (t) => {
  // The runtime families are never namespaced; a namespace equal to their prefix once hid their rule (summed).
  for (const namespace of ['', 'nodejs', 'process', 'celery']) {
    const a = collection(gauge('process_start_time_seconds', 100), gauge('nodejs_version_info', 1), gauge('nodejs_eventloop_utilization_ratio', 0.5), gauge('celery_workers', 2))
    const b = collection(gauge('process_start_time_seconds', 200), gauge('nodejs_version_info', 1), gauge('nodejs_eventloop_utilization_ratio', 0.25), gauge('celery_workers', 2))
    t.same(values(mergeScopeMetrics([a, b], namespace)), {
      process_start_time_seconds: 100, nodejs_version_info: 1, nodejs_eventloop_utilization_ratio: 0.5, celery_workers: 2
    }, `namespace "${namespace}"`)
  }
  const namespaced = mergeScopeMetrics([collection(gauge('app_django_migrations_applied_total', 3)), collection(gauge('app_django_migrations_applied_total', 3))], 'app')
  t.same(values(namespaced), { app_django_migrations_applied_total: 3 }, 'a namespaced family keeps its rule (max)')
})

t.test('a series counted by several workers keeps the earliest start time (its _created), whatever the order', async (t) => {
  const started = (metric: MetricData, startTime: [number, number]): MetricData => ({ ...metric, dataPoints: metric.dataPoints.map((p) => ({ ...p, startTime })) }) as MetricData
  const early: [number, number] = [1700000000, 500]
  const late: [number, number] = [1700000000, 900_000_000]
  const earlyWorker = collection(started(counter('c_total', 1), early), started(histogram('h', 1, [1, 0]), early))
  const lateWorker = collection(started(counter('c_total', 2), late), started(histogram('h', 2, [0, 1]), late))
  const starts = (answer: ScopeMetrics[]) => answer[0]!.metrics.map((m) => m.dataPoints[0]!.startTime)
  t.same(starts(mergeScopeMetrics([lateWorker, earlyWorker])), [early, early], 'late worker first')
  t.same(starts(mergeScopeMetrics([earlyWorker, lateWorker])), [early, early], 'early worker first')
  // A worker that is gone keeps its counts in the retained totals, and its start time with them.
  const totals = new ClusterTotals()
  totals.join(1)
  totals.join(2)
  totals.record(2, lateWorker)
  totals.record(1, earlyWorker)
  totals.leave(1)
  t.same(starts(totals.answer()), [early, early], 'across a gone worker too')
})

/** An exemplar of 0.5 with these ids, as the store makes one. */
const exemplar = (trace: string, timestamp: string, span = 's') => ({ labels: { trace_id: trace, span_id: span }, value: 0.5, timestamp })
/** Histogram `h` with these bucket counts, its one point carrying `exemplars` (one per bucket). */
function withExemplars (sum: number, counts: number[], exemplars: unknown[] | undefined): MetricData {
  const metric = histogram('h', sum, counts)
  return { ...metric, dataPoints: (metric.dataPoints as any[]).map((p) => ({ ...p, value: { ...p.value, exemplars } })) } as MetricData
}

t.test('histogram exemplars: each bucket keeps the most recent of the workers\' exemplars, in either order', async (t) => {
  const one = collection(withExemplars(1, [1, 1], [exemplar('old', '100.5'), exemplar('newer', '300')]))
  const two = collection(withExemplars(1, [1, 1], [exemplar('new', '200.25'), undefined]))
  const exemplarsOf = (answer: ScopeMetrics[]) => (answer[0]!.metrics[0]!.dataPoints[0]!.value as { exemplars?: Array<{ labels: { trace_id: string } } | undefined> }).exemplars?.map((e) => e?.labels.trace_id)
  t.same(exemplarsOf(mergeScopeMetrics([one, two])), ['new', 'newer'])
  t.same(exemplarsOf(mergeScopeMetrics([two, one])), ['new', 'newer'])
  t.same(exemplarsOf(fromWire(JSON.parse(JSON.stringify(toWire(mergeScopeMetrics([one, two])))))), ['new', 'newer'], 'and they travel over IPC')
  t.equal(exemplarsOf(mergeScopeMetrics([collection(histogram('h', 1, [1, 1]))])), undefined, 'none without exemplars')
})

t.test('exemplars from workers with empty buckets (null over IPC) and from a gone worker', async (t) => {
  const full = (id: string, timestamp: string) => exemplar(id.repeat(32), timestamp, id.repeat(16))
  const older = collection(withExemplars(1, [1, 1], [full('a', '100.000'), full('b', '300.000')]))
  const newer = collection(withExemplars(1, [1, 0], [full('c', '200.000'), undefined]))
  const none = collection(histogram('h', 1, [1, 0]))
  const kept = (answer: ScopeMetrics[]) => ((answer[0]!.metrics[0]!.dataPoints[0]!.value as { exemplars?: Array<{ labels: { trace_id: string } } | undefined> }).exemplars ?? []).map((e) => e?.labels.trace_id[0])
  for (const order of [[older, newer, none], [none, newer, older], [newer, none, older]]) {
    // As received over IPC: JSON, where a bucket without an exemplar is null.
    t.same(kept(mergeScopeMetrics(order.map((c) => fromWire(JSON.parse(JSON.stringify(toWire(c))) as ScopeMetrics[])))), ['c', 'b'])
  }
  t.same(kept(mergeScopeMetrics([none, none])), [], 'no exemplars, none made up')
  const totals = new ClusterTotals()
  totals.join(1)
  totals.join(2)
  totals.record(1, older)
  totals.record(2, newer)
  totals.leave(1)
  t.same(kept(totals.answer()), ['c', 'b'], 'a gone worker\'s exemplars stay until newer ones come')
})
