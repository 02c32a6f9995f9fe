import type { Meter } from '@opentelemetry/api'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { UpstreamCacheMetrics } from './cache'

/** Options of `fastify.register(upstreamMetrics, options)`. */
export interface UpstreamMetricsOptions {
  /**
   * Path of the Prometheus scrape route on the app, or `false` to add no route
   * (mount `fastify.upstreamMetrics.handler` yourself, or use `listener`).
   * @default '/metrics'
   */
  path?: string | false
  /**
   * Prefix for every django metric, as django-prometheus's `PROMETHEUS_METRIC_NAMESPACE`
   * (`project` gives `project_django_http_...`). Runtime `process_*` series are never prefixed.
   * @default ''
   */
  namespace?: string
  /**
   * Upper bounds (seconds, ascending) of every latency histogram: HTTP and database.
   * As `PROMETHEUS_LATENCY_BUCKETS`.
   * @default [0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 25, 50, 75]
   */
  latencyBuckets?: number[]
  /**
   * Collect `process_*` and `nodejs_*` runtime metrics.
   * @default true
   */
  runtimeMetrics?: boolean
  /**
   * Requests whose path (without query string) equals one of these strings or matches one
   * of these patterns are not measured: health checks, readiness probes.
   * @default []
   */
  excludePaths?: Array<string | RegExp>
  /**
   * Whether the scrape request is measured itself, as `view="prometheus-django-metrics"`.
   * @default true
   */
  countScrape?: boolean
  /**
   * Most series one metric may hold; further label sets go to one series labelled
   * `otel_metric_overflow="true"`.
   * @default 2000
   */
  cardinalityLimit?: number
  /**
   * Protects the scrape route. Unset: no authentication.
   * @default undefined
   */
  auth?: MetricsAuthOptions
  /**
   * Serve the metrics on a separate listener (e.g. `{ host: '127.0.0.1', port: 9464 }`)
   * instead of a route on the app. Combine with `path: false` to keep them off the public port.
   * @default undefined
   */
  listener?: { host?: string, port: number }
  /**
   * Under Node's `cluster` module, answer each scrape with the totals of every worker.
   * The primary process must call `setupClusterPrimary()`.
   * @default false
   */
  cluster?: boolean | { timeoutMs?: number }
  /**
   * Cache metrics (`django_cache_get_total`, `_hits`, `_misses`, `_fail`, by `backend`):
   * `false` turns them off entirely; `true` is `{}`.
   * @default { redis: true, redisBackend: 'redis', backend: 'locmem' }
   */
  cache?: boolean | CacheOptions
}

export interface CacheOptions {
  /**
   * Count every ioredis client's GET, `getBuffer`, MGET (each key) and pipelined GET,
   * through OpenTelemetry's ioredis instrumentation: `null` is a miss, any other reply a
   * hit, an error a failure.
   * @default true
   */
  redis?: boolean
  /**
   * `backend` label of the Redis series (django-redis says `redis`, Django's own backend `native_redis`).
   * @default 'redis'
   */
  redisBackend?: string
  /**
   * `backend` label of in-process caches (`instrumentCache`, `cache.wrap`, `recordCacheGet`)
   * when the call names none.
   * @default 'locmem'
   */
  backend?: string
}

export interface MetricsAuthOptions {
  /** Accept `Authorization: Bearer <token>`. */
  bearerToken?: string
  /** Accept HTTP basic authentication with these credentials. */
  basic?: { username: string, password: string }
  /** Custom check (IP allow-list, another auth plugin); runs when no credential option matched. */
  check?: (request: FastifyRequest) => boolean | Promise<boolean>
}

/** Per-route settings, in the route's `config.metrics`. */
export interface RouteMetricsConfig {
  /** The `view` label for this route, instead of its URL template (django's URL name). */
  view?: string
  /** Do not measure this route. */
  exclude?: boolean
}

/** What the plugin decorates the Fastify instance with, as `fastify.upstreamMetrics`. */
export interface UpstreamMetrics {
  /** Meter for the app's own metrics: they appear on the same `/metrics`. */
  readonly meter: Meter
  /** Serves the scrape; mount it yourself when `path` is `false`. */
  readonly handler: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  /** The current exposition text. */
  metrics(): Promise<string>
  /** Cache metrics of this instance: wrap an in-process cache, or record a get by hand. */
  readonly cache: UpstreamCacheMetrics
}
