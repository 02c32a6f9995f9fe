import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import { context } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace'
import upstreamMetrics from '../lib/index'
import { key, parse } from './helpers/metrics'

// With @fastify/otel, the plugin adds no span of its own and leaves the app's span names as
// they are without it: the same requests give the same traces with and without the plugin.

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())

type Order = 'otel first' | 'plugin first' | 'no plugin'

async function traced (order: Order): Promise<{ app: FastifyInstance, spans: () => string[][] }> {
  const exporter = new InMemorySpanExporter()
  const otel = new FastifyOtelInstrumentation()
  otel.setTracerProvider(new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] }))
  const app = Fastify()
  if (order === 'plugin first') await app.register(upstreamMetrics, { runtimeMetrics: false })
  await app.register(otel.plugin())
  if (order === 'otel first') await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.get('/', async () => 'home')
  app.get('/items/:id', async function getItem (request) { return { id: (request.params as { id: string }).id } })
  app.get('/boom', async () => { throw new RangeError('boom') })
  return {
    app,
    // Span names per trace, in a stable order.
    spans: () => {
      const traces = new Map<string, string[]>()
      for (const span of exporter.getFinishedSpans()) {
        const id = span.spanContext().traceId
        traces.set(id, [...(traces.get(id) ?? []), span.name].sort())
      }
      return [...traces.values()].sort((a, b) => a.join().localeCompare(b.join()))
    }
  }
}

async function run (app: FastifyInstance): Promise<void> {
  // The app's last onResponse hook: every earlier one (the plugin's too) has run when it does.
  let responded = (): void => {}
  app.addHook('onResponse', (_request, _reply, done) => { responded(); done() })
  await app.ready()
  for (const url of ['/', '/items/1', '/boom', '/missing']) {
    const done = new Promise<void>((resolve) => { responded = resolve })
    await app.inject(url)
    await done
  }
}

for (const order of ['otel first', 'plugin first'] as const) {
  t.test(`registered with @fastify/otel (${order}), the plugin leaves the traces as they are without it`, async (t) => {
    const control = await traced('no plugin')
    const measured = await traced(order)
    t.teardown(async () => { await control.app.close(); await measured.app.close() })
    await run(control.app)
    await run(measured.app)
    const expected = control.spans()
    t.equal(expected.length, 4, 'one trace per request')
    t.ok(expected.flat().includes('handler - fastify -> @fastify/otel'), 'an anonymous handler\'s span is named after the app\'s plugins')
    t.ok(expected.flat().includes('handler - getItem'), 'a named handler\'s span is named after it')
    t.same(measured.spans(), expected)
    const m = parse((await measured.app.inject('/metrics')).body)
    t.equal(m.samples.get(key('django_http_responses_total_by_status_view_method_total', { status: '200', view: '/items/:id', method: 'GET' })), 1, 'and measures the requests')
    t.equal(m.samples.get(key('django_http_exceptions_total_by_type_total', { type: 'RangeError' })), 1)
  })
}
