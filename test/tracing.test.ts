import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { parse } from './helpers/metrics'
import { send } from './helpers/net'
import { startProcess, startPrometheus } from './helpers/prometheus'
import { waitFor } from './helpers/wait'

// Exemplars end to end: an app traced by its own sdk-node (test/fixtures/tracing), scraped by a real
// Prometheus that stores exemplars; the trace ids Prometheus gives back are those of spans the app's
// SDK exported for the same requests, and of no unsampled request.

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const OPENMETRICS = { accept: 'application/openmetrics-text; version=1.0.0' }
const LATENCY_FAMILIES = [
  'django_http_requests_latency_seconds_by_view_method',
  'django_http_requests_latency_including_middlewares_seconds',
  'django_db_query_duration_seconds'
]

interface ExportedSpan { name: string, traceId: string, spanId: string, parentSpanId?: string }
interface App { base: string, spans: () => ExportedSpan[] }
interface StoredExemplar { labels: Record<string, string>, value: string, timestamp: number }

async function startApp (t: Test, env: Record<string, string>): Promise<App> {
  const dir = mkdtempSync(join(tmpdir(), 'um-tracing-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const spansFile = join(dir, 'spans.jsonl')
  let port = 0
  const app = startProcess(t, 'app', process.execPath, ['--require', './test/fixtures/tracing/tracing.cjs', 'test/fixtures/tracing/app.mjs'], {
    ...process.env,
    DATABASE_URL,
    SPANS_FILE: spansFile,
    // Only the traces: the plugin pushes nothing and sdk-node starts no metrics or logs pipeline.
    OTEL_TRACES_EXPORTER: 'none',
    OTEL_METRICS_EXPORTER: 'none',
    OTEL_LOGS_EXPORTER: 'none',
    ...env
  }, { onLine: (line) => { port = Number(/^listening on (\d+)/.exec(line)?.[1] ?? port) } })
  await waitFor('the app to listen', () => port !== 0, { timeoutMs: 60_000, details: app.output })
  const spans = (): ExportedSpan[] => {
    try {
      return readFileSync(spansFile, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as ExportedSpan)
    } catch {
      return []
    }
  }
  return { base: `http://127.0.0.1:${port}`, spans }
}

/** GET /claims/:id; the trace id the app's tracer gave it. An unsampled parent makes an unsampled trace. */
async function claim (app: App, id: number, unsampledParent?: string): Promise<string> {
  const headers: Record<string, string> = unsampledParent === undefined ? {} : { traceparent: `00-${unsampledParent}-${'1'.repeat(16)}-00` }
  const reply = await send(`${app.base}/claims/${id}`, { headers })
  if (reply.status !== 200) throw new Error(`GET /claims/${id}: ${reply.status}`)
  return String(reply.headers['x-trace-id'])
}

/** Each bucket line's exemplar in an OpenMetrics scrape, by family. */
function exemplarsIn (text: string): Map<string, Array<{ traceId: string, spanId: string }>> {
  const found = new Map<string, Array<{ traceId: string, spanId: string }>>()
  for (const line of text.split('\n')) {
    const m = /^(\w+)_bucket\{.*\} \S+ # \{trace_id="([0-9a-f]{32})",span_id="([0-9a-f]{16})"\} \S+ \S+$/.exec(line)
    if (m === null) continue
    found.set(m[1]!, [...(found.get(m[1]!) ?? []), { traceId: m[2]!, spanId: m[3]! }])
  }
  return found
}

const unsampledIds = ['a'.repeat(31) + '1', 'a'.repeat(31) + '2', 'a'.repeat(31) + '3']

for (const tracing of ['sdk-node with instrumentation-http', 'sdk-node with @fastify/otel']) {
  t.test(`${tracing}: Prometheus stores exemplars whose trace ids are the app's exported traces`, async (t) => {
    const app = await startApp(t, { TRACING: tracing.includes('@fastify/otel') ? 'fastify-otel' : 'http' })
    const prometheus = await startPrometheus(t, {
      global: { scrape_interval: '1s', scrape_timeout: '900ms' },
      scrape_configs: [{ job_name: 'app', static_configs: [{ targets: [app.base.slice('http://'.length)] }] }]
    }, {}, ['--enable-feature=exemplar-storage'])

    const sampled: string[] = []
    for (let i = 0; i < 10; i++) {
      sampled.push(await claim(app, i))
      await claim(app, i, unsampledIds[i % unsampledIds.length])
    }
    const last = await claim(app, 99)
    sampled.push(last)
    await claim(app, 100, unsampledIds[0])
    t.equal(new Set(sampled).size, sampled.length, 'each sampled request has its own trace')

    // The most recent sampled observation of a bucket is its exemplar; an unsampled one never replaces it.
    let scrape = ''
    await waitFor('the last sampled request as an exemplar', async () => {
      scrape = (await send(`${app.base}/metrics`, { headers: OPENMETRICS })).body.toString()
      return [...exemplarsIn(scrape).values()].flat().some((e) => e.traceId === last)
    }, { timeoutMs: 30_000, details: () => scrape.split('\n').filter((line) => line.includes('_bucket')).slice(0, 20).join('\n') })
    const onPage = exemplarsIn(scrape)
    for (const family of LATENCY_FAMILIES) t.ok((onPage.get(family) ?? []).length > 0, `${family} has exemplars`)

    const stored = new Map<string, StoredExemplar[]>()
    const since = Date.now() / 1000 - 300
    await waitFor('Prometheus to store the exemplars of every latency family', async () => {
      for (const family of LATENCY_FAMILIES) {
        const params = new URLSearchParams({ query: `${family}_bucket`, start: since.toFixed(3), end: (Date.now() / 1000 + 60).toFixed(3) })
        const answer = await (await fetch(`${prometheus.base}/api/v1/query_exemplars?${params.toString()}`)).json() as { data: Array<{ exemplars: StoredExemplar[] }> }
        stored.set(family, answer.data.flatMap((series) => series.exemplars))
      }
      return LATENCY_FAMILIES.every((family) => (stored.get(family) ?? []).some((e) => sampled.includes(e.labels.trace_id!)))
    }, { timeoutMs: 60_000, details: () => prometheus.output() })

    const spans = app.spans()
    const traceIds = new Set(spans.map((s) => s.traceId))
    const spanIds = new Set(spans.map((s) => s.spanId))
    for (const family of LATENCY_FAMILIES) {
      const exemplars = stored.get(family)!
      const traces = exemplars.map((e) => e.labels.trace_id!)
      t.ok(exemplars.length > 0, `${family}: Prometheus returns exemplars`)
      t.same(traces.filter((id) => !traceIds.has(id)), [], `${family}: every exemplar's trace was exported by the app's SDK`)
      t.same(traces.filter((id) => !sampled.includes(id)), [], `${family}: every exemplar is a sampled request of this test`)
      t.same(exemplars.map((e) => e.labels.span_id).filter((id) => !spanIds.has(id!)), [], `${family}: every exemplar's span was exported`)
      t.same(Object.keys(exemplars[0]!.labels).sort(), ['span_id', 'trace_id'], `${family}: trace_id and span_id only`)
    }
    // One check for all of them: how many exemplars Prometheus kept varies from run to run.
    const unlinked = stored.get('django_db_query_duration_seconds')!.filter((exemplar) => !spans.some((s) =>
      s.traceId === exemplar.labels.trace_id && s.name.startsWith('pg.query') && s.parentSpanId === exemplar.labels.span_id))
    t.same(unlinked, [], 'every database exemplar names the request span whose child is the app\'s own pg.query span')
    const served = Number((await prometheus.query('up{job="app"}'))[0]?.value[1])
    t.equal(served, 1, 'the target is up')
  })
}

t.test('exemplars: false records none; the text format never carries them', async (t) => {
  const app = await startApp(t, { TRACING: 'http', EXEMPLARS: 'false' })
  await claim(app, 1)
  await claim(app, 2)
  const openMetrics = (await send(`${app.base}/metrics`, { headers: OPENMETRICS })).body.toString()
  t.match(openMetrics, /django_http_requests_latency_seconds_by_view_method_bucket/, 'the latency histogram is there')
  t.same([...exemplarsIn(openMetrics).keys()], [], 'no exemplar with the option off')

  const traced = await startApp(t, { TRACING: 'http' })
  await claim(traced, 1)
  const text = (await send(`${traced.base}/metrics`)).body.toString()
  t.notMatch(text, / # \{/, 'text 0.0.4 has no exemplars')
  t.ok(parse(text).samples.size > 0, 'the text format parses')
  t.match((await send(`${traced.base}/metrics`, { headers: OPENMETRICS })).body.toString(), / # \{trace_id="/, 'OpenMetrics has them')
})
