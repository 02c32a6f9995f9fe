import { createServer, type Server } from 'node:http'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { accessCheck, credentials, type Credentials } from './access'
import { startCacheMetrics } from './cache'
import { ClusterWorker } from './cluster'
import { AlreadyRegisteredError } from './errors'
import { leavePluginName } from './fastify-internals'
import { Faults } from './faults'
import { instrumentDb } from './db/index'
import { instrumentHttp, kScrapeRoute } from './http/index'
import { resolveOptions } from './options'
import { OTLP_EXPORTER, OTLP_EXPORTER_VERSION } from './otlp/options'
import { requirePeer } from './peer'
import { warnUnderPm2 } from './pm2'
import { Telemetry } from './telemetry'
import { startRuntimeMetrics } from './runtime'
import { singleFlight } from './single-flight'
import { Exposition, scrapeAnswer, type ScrapeNegotiation } from './scrape'
import { Store } from './store'
import type { UpstreamMetrics, UpstreamMetricsOptions } from './types'
import { WorkerCollector } from './worker/collector'
import { loadIoredis } from './worker/ioredis'

export const DECORATOR = 'upstreamMetrics'
const PLUGIN_NAME = 'upstream-metrics'

async function upstreamMetrics (fastify: FastifyInstance, opts: UpstreamMetricsOptions): Promise<void> {
  const options = resolveOptions(opts)
  const root = rootOf(fastify)
  if (root.hasDecorator(DECORATOR)) throw new AlreadyRegisteredError()
  warnUnderPm2(options.path, fastify.log)
  // Out of `fastify.pluginName`, which tracers such as @fastify/otel use to name the app's handlers.
  leavePluginName(fastify, PLUGIN_NAME)

  const store = new Store(options.namespace, options.cardinalityLimit)
  const faults = new Faults(fastify.log)
  // Loaded only when push is on, so that with it off nothing of OTLP is loaded or started.
  const push = options.otlp === undefined
    ? undefined
    : requirePeer(() => require('./otlp/index') as typeof import('./otlp/index'), 'the otlp option', OTLP_EXPORTER, `${OTLP_EXPORTER}@${OTLP_EXPORTER_VERSION}`)
      .startOtlpPush(store, options.otlp, options.namespace, fastify.log)
  const telemetry = new Telemetry(store, options.cardinalityLimit, {
    collectTimeoutMs: options.collectTimeoutMs,
    log: fastify.log,
    createdSeries: options.createdSeries,
    readers: push === undefined ? [] : [push.reader]
  })
  // Everything started is stopped in reverse order, on close or when registration fails half-way.
  const stops: Array<() => unknown> = [async () => await telemetry.shutdown()]
  // Runs just before the provider's shutdown, whose last export it bounds.
  if (push !== undefined) stops.push(push.closeWithin)
  const stopAll = async (): Promise<void> => {
    for (const stop of stops.reverse()) await stop()
  }
  try {
    if (options.runtimeMetrics) stops.push(startRuntimeMetrics(telemetry.runtimeMeter))
    instrumentHttp(root, store, options, faults)
    stops.push(instrumentDb(root, store, options, faults, telemetry.meters))
    const cache = startCacheMetrics(store, options.cache, faults, options.cardinalityLimit, fastify.log)
    stops.push(() => cache.stop())
    const worker = options.worker === undefined
      ? undefined
      : new WorkerCollector(store, { ...options.worker, IORedis: loadIoredis('the worker option'), log: fastify.log })
    if (worker !== undefined) stops.push(async () => await worker.close())
    if (push !== undefined && worker !== undefined) push.producer.beforeCollect = async () => { await worker.refresh() }

    // Scrapes that arrive while one is collected share its collection and its text.
    const collectLocal = singleFlight(async () => {
      await worker?.refresh()
      return await telemetry.collect()
    })
    const clusterWorker = options.cluster === undefined ? undefined : new ClusterWorker(collectLocal, options.cluster.timeoutMs, options.namespace)
    if (clusterWorker !== undefined) stops.push(() => clusterWorker.close())
    // Serialized once per format, and encoded once when served: the scrapes sharing it write the same bytes.
    const exposition = singleFlight(async (): Promise<Exposition> => {
      const scopeMetrics = clusterWorker === undefined ? await collectLocal() : await clusterWorker.aggregate()
      return new Exposition((format) => telemetry.serialize(scopeMetrics, format))
    })
    const metrics = async (): Promise<string> => (await exposition()).text()
    const negotiation: ScrapeNegotiation = { openMetrics: options.openMetrics }

    const checkAccess = accessCheck(options.auth)
    async function handler (request: FastifyRequest, reply: FastifyReply): Promise<void> {
      if (checkAccess !== undefined && !await checkAccess(request, reply)) return
      let answer
      try {
        answer = await scrapeAnswer(await exposition(), request.headers, negotiation)
      } catch (err) {
        request.log.error({ err }, 'upstream-metrics: collecting metrics failed')
        reply.code(500).type('text/plain; charset=utf-8').send('# metrics collection failed\n')
        return
      }
      reply.headers(answer.headers).send(answer.body)
    }

    if (options.path !== false) {
      fastify.route({ method: 'GET', url: options.path, handler, config: { [kScrapeRoute]: true } as object, logLevel: 'warn' })
    }

    let listener: Server | undefined
    if (options.listener !== undefined) {
      if (options.auth?.check !== undefined) fastify.log.warn('upstream-metrics: auth.check applies to the app route only; the internal listener checks bearerToken / basic credentials and relies on its bind address')
      const server = await startListener(fastify, options.listener, exposition, negotiation, credentials(options.auth))
      listener = server
      stops.push(async () => await new Promise<void>((resolve) => server.close(() => resolve())))
    }

    // Connects to Redis last, once nothing else can fail.
    worker?.start()
    const address = listener?.address()
    const decoration: UpstreamMetrics = {
      meter: telemetry.meter,
      handler,
      metrics,
      listenerAddress: typeof address === 'object' && address !== null ? { host: address.address, port: address.port } : undefined,
      cache: cache.api,
      flush: async () => { await push?.reader.forceFlush().catch(() => {}) }
    }
    root.decorate(DECORATOR, decoration)
  } catch (err) {
    await stopAll()
    throw err
  }
  fastify.addHook('onClose', stopAll)
}

/**
 * The instance every context of the app inherits from: Fastify makes each encapsulated context with
 * `Object.create(parent)`. A hook added to it reaches every route, declared before or after, in any plugin, and the
 * 404 handlers (Fastify passes it on to the existing contexts and settles every route's hooks when the app is ready),
 * so the plugin measures the whole app wherever it is registered: inside fastify-cli's `app.js`, an autoloaded folder.
 */
function rootOf (fastify: FastifyInstance): FastifyInstance {
  let root = fastify
  for (let parent: unknown = Object.getPrototypeOf(root); parent !== Object.prototype && parent !== null; parent = Object.getPrototypeOf(root)) {
    root = parent as FastifyInstance
  }
  return root
}

/** A bare internal listener for the scrape, kept off the app's port (and its hooks). */
async function startListener (
  fastify: FastifyInstance,
  address: { host: string, port: number },
  exposition: () => Promise<Exposition>,
  negotiation: ScrapeNegotiation,
  creds: Credentials | undefined
): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404).end()
      return
    }
    if (creds !== undefined && !creds.accepts(req.headers.authorization)) {
      res.writeHead(401, { 'www-authenticate': creds.challenge, 'content-type': 'text/plain; charset=utf-8' }).end('Unauthorized\n')
      return
    }
    exposition().then(async (collected) => await scrapeAnswer(collected, req.headers, negotiation)).then(
      (answer) => res.writeHead(200, answer.headers).end(answer.body),
      (err) => {
        fastify.log.error({ err }, 'upstream-metrics: collecting metrics failed')
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('# metrics collection failed\n')
      }
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(address.port, address.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return server
}

export default fp(upstreamMetrics, { fastify: '5.x', name: PLUGIN_NAME })
