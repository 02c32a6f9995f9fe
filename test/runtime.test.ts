// Runtime metrics: the event-loop delay without the sampling interval, as gauges promtool accepts,
// over a window that does not shrink however many readers scrape.
import { spawnSync } from 'node:child_process'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import t from 'tap'
import Fastify from 'fastify'
import upstreamMetrics from '../lib/index'
import { Telemetry } from '../lib/telemetry'
import { EVENT_LOOP_RESOLUTION_MS, startRuntimeMetrics } from '../lib/runtime'
import { Store } from '../lib/store'
import { parse } from './helpers/metrics'
import { get } from './helpers/net'
import { waitFor } from './helpers/wait'

/** A stall the runtime metrics' delay always shows as at least `STALL_SHOWS_S`: it delays the sample due during it by what is left of it. */
const STALL_MS = 3 * EVENT_LOOP_RESOLUTION_MS
const STALL_SHOWS_S = (STALL_MS - EVENT_LOOP_RESOLUTION_MS) / 1000

/** Resolves once the loop has gone round `samples` turns of 20 ms, as a delay histogram of the test's own counts them. */
async function loopSamples (samples: number): Promise<void> {
  const histogram = monitorEventLoopDelay({ resolution: 20 })
  histogram.enable()
  try {
    await waitFor(`${samples} event-loop delay samples`, () => histogram.count >= samples, { intervalMs: 20 })
  } finally {
    histogram.disable()
  }
}

function block (ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) { /* a handler that blocks the loop */ }
}

t.test('an idle app reports its real event-loop delay, not the sampling interval, in gauges promtool accepts', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics)
  t.teardown(() => app.close())
  await loopSamples(Math.ceil(5 * EVENT_LOOP_RESOLUTION_MS / 20))
  const text = (await app.inject('/metrics')).body
  const m = parse(text)
  for (const stat of ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99']) {
    t.equal(m.type.get(`nodejs_eventloop_lag_${stat}_seconds`), 'gauge', `nodejs_eventloop_lag_${stat}_seconds`)
  }
  const p50 = m.samples.get('nodejs_eventloop_lag_p50_seconds')!
  t.ok(p50 >= 0 && p50 < 0.02, `idle p50 ${p50} s is near zero, not the ${EVENT_LOOP_RESOLUTION_MS} ms sampling interval`)
  t.comment(`idle: p50 ${p50} s, p99 ${m.samples.get('nodejs_eventloop_lag_p99_seconds')} s`)
  const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 })
  if (lint.error !== undefined) throw new Error(`promtool is needed (apt-get install -y --no-install-recommends prometheus): ${lint.error.message}`)
  t.equal(`${lint.stdout}${lint.stderr}`, '', 'promtool check metrics prints nothing')
  t.equal(lint.status, 0)
})

t.test('every reader sees the same event-loop window: a stall shows in every scrape, whoever scraped before', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { listener: { port: 0 } })
  t.teardown(() => app.close())
  await loopSamples(5)
  block(STALL_MS)
  await waitFor('the stall in the event-loop delay', async () => parse(await app.upstreamMetrics.metrics()).samples.get('nodejs_eventloop_lag_max_seconds')! >= STALL_SHOWS_S)
  // Three readers, idle time between them: each read must still cover the stall.
  const readers = [
    async () => (await app.inject('/metrics')).body,
    async () => (await get(`http://127.0.0.1:${app.upstreamMetrics.listenerAddress!.port}/metrics`)).body,
    async () => await app.upstreamMetrics.metrics()
  ]
  const reads = []
  for (const read of readers) {
    reads.push(parse(await read()))
    await loopSamples(5)
  }
  for (const [i, m] of reads.entries()) {
    t.ok(m.samples.get('nodejs_eventloop_lag_max_seconds')! >= STALL_SHOWS_S, `read ${i}: the ${STALL_MS} ms stall is in the max (${m.samples.get('nodejs_eventloop_lag_max_seconds')})`)
    t.ok(m.samples.get('nodejs_eventloop_utilization_ratio')! >= 0.3, `read ${i}: and in the utilisation (${m.samples.get('nodejs_eventloop_utilization_ratio')})`)
  }
})

t.test('the window rotates on its own timer: a stall leaves the figures after two windows', async (t) => {
  const store = new Store('', 100)
  const telemetry = new Telemetry(store, 100)
  const stop = startRuntimeMetrics(telemetry.runtimeMeter, { windowMs: 300 })
  t.teardown(async () => { stop(); await telemetry.shutdown() })
  const maxLag = async () => parse(telemetry.serialize(await telemetry.collect())).samples.get('nodejs_eventloop_lag_max_seconds')!
  await waitFor('a first event-loop delay sample', async () => await maxLag() !== undefined)
  block(STALL_MS)
  const stalled = performance.now()
  await waitFor('the stall in the event-loop delay', async () => await maxLag() >= STALL_SHOWS_S)
  t.ok(await maxLag() >= STALL_SHOWS_S, 'the stall is in the current window')
  t.ok(await maxLag() >= STALL_SHOWS_S, 'a second read does not reset it')
  // Until a reading without the stall: one with no sample yet (just after a rotation) is not one.
  const goneAfterMs = await waitFor('the stall to leave the window', async () => await maxLag() < STALL_SHOWS_S && performance.now() - stalled)
  t.ok(await maxLag() < STALL_SHOWS_S, 'two windows later it is gone')
  // The rotation timer runs on libuv's clock, in whole milliseconds: a few ms of slack.
  t.ok(goneAfterMs >= 300 - 5, `not before a whole window has passed (${goneAfterMs.toFixed(0)} ms)`)
})
