import { AsyncLocalStorage } from 'node:async_hooks'
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { ROOT_CONTEXT, context, trace, type Context, type ContextManager, type Span, type Tracer } from '@opentelemetry/api'
import { RedisInstrumentation } from '@opentelemetry/instrumentation-redis'
// Loaded before the plugin registers, as apps do.
import { createClient } from 'redis'
import upstreamMetrics from '../lib/index'
import { patchRefs } from '../lib/patch'
import { cacheCounts } from './helpers/metrics'
import { freePort as closedPort } from './helpers/net'

async function counts (app: FastifyInstance, backend = 'redis'): Promise<Record<string, number | undefined>> {
  return cacheCounts((await app.inject({ method: 'GET', url: '/metrics' })).body, backend)
}

const URL = 'redis://127.0.0.1:6379/5'
const P = 'um_cache:node-redis:'

async function app (): Promise<FastifyInstance> {
  const fastify = Fastify()
  await fastify.register(upstreamMetrics, { runtimeMetrics: false })
  await fastify.ready()
  return fastify
}

t.test('node-redis reads are counted with exact hit, miss and failure counts', async (t) => {
  const client = createClient({ url: URL })
  client.on('error', () => {})
  await client.connect()
  const keys = [`${P}a`, `${P}empty`, `${P}zero`, `${P}missing`, `${P}hash`]
  t.teardown(async () => { await client.del(keys); client.destroy() })
  await client.del(keys)
  await client.set(`${P}a`, 'A')
  await client.set(`${P}empty`, '')
  await client.set(`${P}zero`, '0')
  await client.hSet(`${P}hash`, 'f', '1')

  const fastify = await app()
  t.teardown(() => fastify.close())
  t.equal(patchRefs('node-redis'), 1)

  t.equal(await client.get(`${P}a`), 'A') // hit
  t.equal(await client.get(`${P}missing`), null) // miss
  t.equal(await client.get(`${P}empty`), '') // hit: present though empty
  t.equal(await client.sendCommand(['GET', `${P}a`]), 'A') // hit: the raw command is a get too
  t.same(await client.mGet([`${P}a`, `${P}missing`, `${P}zero`]), ['A', null, '0']) // 2 hits, 1 miss
  t.same(await client.multi().get(`${P}a`).exec(), ['A']) // a transaction: not counted
  t.same(await client.multi().get(`${P}a`).get(`${P}missing`).execAsPipeline(), ['A', null]) // 1 hit, 1 miss
  await t.rejects(client.get(`${P}hash`), /WRONGTYPE/) // failure

  const closed = createClient({ url: URL })
  closed.on('error', () => {})
  await closed.connect()
  closed.destroy()
  await t.rejects(closed.get(`${P}a`), /closed/) // failure

  const down = createClient({ socket: { host: '127.0.0.1', port: await closedPort(), reconnectStrategy: false } })
  down.on('error', () => {})
  await t.rejects(down.connect())
  await t.rejects(down.get(`${P}a`)) // failure
  await t.rejects(down.mGet([`${P}a`, `${P}zero`])) // 2 failures: each key

  t.same(await counts(fastify), { total: 14, hits: 6, misses: 3, fail: 5, guideHits: 6, guideMisses: 3 })
  await fastify.close()
  t.equal(patchRefs('node-redis'), 0)
})

/** Enough of a context manager for the test: AsyncLocalStorage, as @opentelemetry/context-async-hooks does. */
class AlsContextManager implements ContextManager {
  private readonly storage = new AsyncLocalStorage<Context>()
  active (): Context { return this.storage.getStore() ?? ROOT_CONTEXT }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(ctx: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    return this.storage.run(ctx, () => fn.call(thisArg, ...args))
  }

  bind<T>(_ctx: Context, target: T): T { return target }
  enable (): this { return this }
  disable (): this { this.storage.disable(); return this }
}

t.test("the app's own tracing keeps its spans and their parent", async (t) => {
  context.setGlobalContextManager(new AlsContextManager())
  t.teardown(() => context.disable())
  // The app's tracer: records each span's parent (the span active when it starts).
  const parents: Array<string | undefined> = []
  const appTracer: Tracer = {
    startSpan: () => {
      parents.push(trace.getSpanContext(context.active())?.spanId)
      return trace.wrapSpanContext({ traceId: '1'.repeat(32), spanId: '2'.repeat(16), traceFlags: 1 })
    },
    startActiveSpan: (() => { throw new Error('unused') }) as never
  }
  const theirs = new RedisInstrumentation({ enabled: false, requireParentSpan: true })
  theirs.setTracerProvider({ getTracer: () => appTracer })
  theirs.enable()
  t.teardown(() => theirs.disable())
  // A client module loaded after enable() is patched through the require hook; this one was
  // loaded before, so patch it the way the plugin does.
  const inner = (theirs as unknown as { instrumentationV4_V5: { _modules: Array<{ files: Array<{ name: string, patch: (e: unknown, v?: string) => unknown, unpatch: (e: unknown, v?: string) => void }> }> } }).instrumentationV4_V5
  const file = inner._modules[0]!.files.find((f) => f.name.endsWith('/dist/lib/client/index.js'))!
  const clientModule = require(require.resolve('@redis/client/dist/lib/client/index.js'))
  file.patch(clientModule, '6.3.1')
  t.teardown(() => file.unpatch(clientModule, '6.3.1'))

  const client = createClient({ url: URL })
  client.on('error', () => {})
  await client.connect()
  t.teardown(async () => { await client.del(`${P}traced`); client.destroy() })
  await client.set(`${P}traced`, 'T')
  const fastify = await app()
  t.teardown(() => fastify.close())

  const request = trace.wrapSpanContext({ traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), traceFlags: 1 }) as Span
  parents.length = 0
  await context.with(trace.setSpan(context.active(), request), async () => {
    t.equal(await client.get(`${P}traced`), 'T')
    await client.set(`${P}traced`, 'T')
  })
  t.same(parents, ['b'.repeat(16), 'b'.repeat(16)], "the app's spans exist and keep the request span as parent")
  t.equal((await counts(fastify)).hits, 1)
})
