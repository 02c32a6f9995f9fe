import type { Meter } from '@opentelemetry/api'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { UpstreamCacheMetrics } from './cache'

/** The plugin: `fastify.register(upstreamMetrics, options)`. */
export type UpstreamMetricsPlugin = FastifyPluginAsync<UpstreamMetricsOptions>

/** Options of `fastify.register(upstreamMetrics, options)`. */
export interface UpstreamMetricsOptions {
  /**
   * Path of the Prometheus scrape route on the app, or `false` to add no route
   * (mount `fastify.upstreamMetrics.handler` yourself, or use `listener`).
   * @default '/metrics'
   */
  path?: string | false | undefined
  /**
   * Prefix for every django metric, as django-prometheus's `PROMETHEUS_METRIC_NAMESPACE`
   * (`project` gives `project_django_http_...`). The runtime `process_*` / `nodejs_*` series and the
   * `celery_*` series are never prefixed.
   * @default ''
   */
  namespace?: string | undefined
  /**
   * Upper bounds (seconds, ascending) of every latency histogram: HTTP and database.
   * As `PROMETHEUS_LATENCY_BUCKETS`.
   * @default [0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 25, 50, 75]
   */
  latencyBuckets?: number[] | undefined
  /**
   * Collect `process_*` and `nodejs_*` runtime metrics.
   * @default true
   */
  runtimeMetrics?: boolean | undefined
  /**
   * Requests whose path (without query string) equals one of these strings or matches one
   * of these patterns are not measured: health checks, readiness probes.
   * @default []
   */
  excludePaths?: Array<string | RegExp> | undefined
  /**
   * Whether the scrape request is measured itself, as `view="prometheus-django-metrics"`.
   * @default true
   */
  countScrape?: boolean | undefined
  /**
   * Answer OpenMetrics 1.0 to scrapers that prefer it (Prometheus does by default), text 0.0.4
   * otherwise; `false` always answers text 0.0.4. Prometheus stores the same series from both.
   * @default true
   */
  openMetrics?: boolean | undefined
  /**
   * A `<name>_created` series (the series' start time, in seconds) for every counter and histogram,
   * as prometheus_client writes them (`PROMETHEUS_DISABLE_CREATED_SERIES` turns them off there).
   * @default true
   */
  createdSeries?: boolean | undefined
  /**
   * Most series one metric may hold; further label sets go to one series labelled
   * `otel_metric_overflow="true"`.
   * @default 2000
   */
  cardinalityLimit?: number | undefined
  /**
   * Attach the trace of the app's own OpenTelemetry to the latency histograms: each bucket keeps
   * the trace and span ids of its most recent observation made while a sampled span was active
   * (OpenTelemetry's default `trace_based` exemplar filter). They are written only in the
   * OpenMetrics format; without tracing nothing is recorded. See docs/tracing.md.
   * @default true
   */
  exemplars?: boolean | undefined
  /**
   * HTTP metrics beyond django-prometheus's: custom labels, OpenTelemetry's HTTP histogram.
   * @default { semconvMetrics: false, labels: {} }
   */
  http?: HttpOptions | undefined
  /**
   * Longest time (ms) an observable callback of your own meter may take during a scrape. A callback
   * that fails, times out or has not settled since the previous scrape leaves its own series out of
   * that scrape (logged once per minute); everything else is served. Keep it below Prometheus's
   * `scrape_timeout` (10 s by default) and, under `cluster`, below the primary's `timeoutMs`.
   * @default 3000
   */
  collectTimeoutMs?: number | undefined
  /**
   * Protects the scrape route. Unset: no authentication.
   * @default undefined
   */
  auth?: MetricsAuthOptions | undefined
  /**
   * Also serve `GET /metrics` on a separate listener (`host` defaults to `'127.0.0.1'`), beside the
   * route on the app. Combine with `path: false` to keep them off the public port.
   * @default undefined
   */
  listener?: { host?: string | undefined, port: number } | undefined
  /**
   * Under Node's `cluster` module, answer each scrape with the totals of every worker.
   * The primary process must call `setupClusterPrimary()`. `true` is `{ timeoutMs: 5000 }`: how long
   * a scrape waits for the primary's totals before it answers 500.
   * @default false
   */
  cluster?: boolean | { timeoutMs?: number | undefined } | undefined
  /**
   * PostgreSQL metrics (`django_db_*`, `django_model_*`, migrations) from every query sent
   * through `pg` (measured by `@opentelemetry/instrumentation-pg`) or postgres.js 4 (its
   * diagnostics channels); `false` turns them off.
   * @default { alias: 'default', defaultSchema: 'public', models: undefined, migrations: false, semconvMetrics: false }
   */
  db?: false | DbOptions | undefined
  /**
   * Cache metrics (`django_cache_get_total`, `_hits`, `_misses`, `_fail`, by `backend`):
   * `false` turns them off entirely; `true` is `{}`.
   * @default { redis: true, redisBackend: 'redis', backend: 'locmem' }
   */
  cache?: boolean | CacheOptions | undefined
  /**
   * Follow BullMQ queues in this process and add celery-prometheus-exporter's `celery_*`
   * series to the scrape, as the `upstream-metrics-worker` command does (no second process).
   * `true` takes every default. Celery series are never namespaced. Needs the package `ioredis`
   * (5 or 6, an optional peer dependency): without it registration fails with `UPSTREAM_METRICS_MISSING_PEER`.
   * @default undefined
   */
  worker?: boolean | WorkerMetricsOptions | undefined
  /**
   * Also push every series of `/metrics` over OTLP/HTTP (protobuf) to an OpenTelemetry
   * Collector or any OTLP receiver, named so that the standard OTLP → Prometheus translation
   * gives back the django names (see docs/scaling.md). `true` takes every default; unset, the
   * environment decides: `OTEL_METRICS_EXPORTER=otlp` turns it on. Combine with `path: false`
   * to push only.
   * @default false
   */
  otlp?: boolean | OtlpOptions | undefined
}

/** The `otlp` option. Each setting falls back to its standard OpenTelemetry environment variable. */
export interface OtlpOptions {
  /**
   * OTLP/HTTP metrics URL; a URL without a path gets `/v1/metrics`.
   * @default $OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, else $OTEL_EXPORTER_OTLP_ENDPOINT + '/v1/metrics', else 'http://localhost:4318/v1/metrics'
   */
  endpoint?: string | undefined
  /**
   * Headers of every export (e.g. an API key), over those of `OTEL_EXPORTER_OTLP_HEADERS`.
   * @default undefined
   */
  headers?: Record<string, string> | undefined
  /**
   * Time between two exports, in milliseconds (at least 100).
   * @default $OTEL_METRIC_EXPORT_INTERVAL, else 60000
   */
  intervalMs?: number | undefined
  /**
   * Most time one export may take, retries included; the last export, at `close()`, takes at most 2 s
   * or this, whichever is shorter.
   * @default $OTEL_METRIC_EXPORT_TIMEOUT, else $OTEL_EXPORTER_OTLP_METRICS_TIMEOUT, else $OTEL_EXPORTER_OTLP_TIMEOUT, else 10000 (at most intervalMs)
   */
  timeoutMs?: number | undefined
  /**
   * `service.name` resource attribute, the `job` label after translation.
   * @default $OTEL_SERVICE_NAME, else service.name in $OTEL_RESOURCE_ATTRIBUTES, else 'unknown_service:node'
   */
  serviceName?: string | undefined
  /**
   * More resource attributes, over those of `OTEL_RESOURCE_ATTRIBUTES`. `service.instance.id`
   * (the `instance` label) defaults to `<hostname>:<pid>`.
   * @default {}
   */
  resourceAttributes?: Record<string, string> | undefined
}

/** A custom label's value for a request (see `HttpOptions.labels`). */
export type HttpLabelFunction = (request: FastifyRequest) => string | number | boolean | undefined | null

export interface HttpOptions {
  /**
   * Custom labels on the families labelled by view (`…_latency_seconds_by_view_method`,
   * `…_total_by_view_transport_method`, `…_total_by_status_view_method`, `…_exceptions_total_by_view`),
   * django-prometheus's `label_metric` extension: `{ tenant: (request) => request.headers['x-tenant'] }`.
   * Each function is called when a family is recorded, with the request as it is then; values are
   * capped at 100 characters of `[A-Za-z0-9_./@:+-]` (else `other`), each family at `cardinalityLimit`
   * series. Never a value that identifies a person (see docs/metrics.md#custom-labels).
   * @default {}
   */
  labels?: Record<string, HttpLabelFunction> | undefined
  /**
   * Also record OpenTelemetry's stable `http.server.request.duration` histogram (exposed as
   * `http_server_request_duration_seconds`) from the same hooks, with its attributes
   * `http.request.method`, `http.route`, `http.response.status_code`, `url.scheme`, `error.type`
   * and the semantic conventions' default buckets.
   * @default false
   */
  semconvMetrics?: boolean | undefined
}

/** Connection details the `alias` function sees. */
export interface DbConnectionInfo {
  database?: string | undefined
  host?: string | undefined
  port?: number | undefined
}

export interface DbOptions {
  /**
   * The `alias` label (django's `DATABASES` key). A function tells several databases or
   * pools apart by their connection, e.g. `({ port }) => port === 5433 ? 'replica' : 'default'`;
   * it is called once per distinct connection.
   * @default 'default'
   */
  alias?: string | ((connection: DbConnectionInfo) => string) | undefined
  /**
   * Schema whose tables are labelled without the schema in `django_model_*{model}`;
   * tables elsewhere are labelled `schema.table`.
   * @default 'public'
   */
  defaultSchema?: string | undefined
  /**
   * The `model` label of `django_model_*` for a table, as the name given to django's
   * `ExportModelOperationsMixin('claim')`: `{ app_claim: 'claim' }`, or a function
   * `(table) => 'claim' | undefined` (asked once per table). Tables are keyed as their default
   * label: the bare name in `defaultSchema`, `schema.table` elsewhere, quoted names as written.
   * A table a record does not list, or for which the function answers `undefined` (or throws),
   * keeps its table name. With a record, the three series of every model it names exist at 0
   * from startup, as the mixin creates them.
   * @default undefined (every model is labelled with its table name)
   */
  models?: DbModels | undefined
  /**
   * `django_migrations_applied_total` / `django_migrations_unapplied_total`, read once at
   * startup, as django-prometheus's `PROMETHEUS_EXPORT_MIGRATIONS`.
   * @default false
   */
  migrations?: false | MigrationsOptions | undefined
  /**
   * Also expose the OpenTelemetry semantic-convention metrics the instrumentation records
   * itself: `db.client.operation.duration` and the pool connection gauges.
   * @default false
   */
  semconvMetrics?: boolean | undefined
}

/** `db.models`: table → model name. */
export type DbModels = Readonly<Record<string, string>> | ((table: string) => string | undefined)

export type MigrationTool = 'node-pg-migrate' | 'knex' | 'prisma' | 'drizzle'

export interface MigrationCounts {
  applied: number
  unapplied: number
}

export interface MigrationsOptions {
  /**
   * Runs the read of the migration table: a `pg` Pool or Client (anything with
   * `query(text)` resolving to `{ rows }`). Needed unless `count` is given.
   * @default undefined
   */
  client?: { query: (text: string) => Promise<{ rows: unknown[] }> } | undefined
  /**
   * The tool whose table is read; unset, the first of node-pg-migrate (`pgmigrations`),
   * knex (`knex_migrations`), Prisma (`_prisma_migrations`), drizzle
   * (`drizzle.__drizzle_migrations`) whose table exists.
   * @default undefined (detected)
   */
  tool?: MigrationTool | undefined
  /** The migration table, when not the tool's default (`schema.table` allowed); needs `tool`. @default the tool's table */
  table?: string | undefined
  /**
   * Directory of migration files, to count the unapplied ones. Default per tool:
   * `migrations`, `migrations`, `prisma/migrations`, `drizzle` (relative to the working
   * directory). When it does not exist, unapplied is not exposed.
   * @default the tool's directory
   */
  dir?: string | undefined
  /** The `connection` label. @default the `alias` option when it is a string, else 'default' */
  connection?: string | undefined
  /** Your own count instead of reading a table. @default undefined */
  count?: (() => MigrationCounts | Promise<MigrationCounts>) | undefined
}

export interface CacheOptions {
  /**
   * Count the GETs (plain, `getBuffer`, pipelined) and MGETs (each key) of every ioredis 5–6
   * and node-redis 4–6 client, through OpenTelemetry's ioredis and redis instrumentations:
   * `null` is a miss, any other reply a hit, an error a failure. Transactions are not counted.
   * @default true
   */
  redis?: boolean | undefined
  /**
   * `backend` label of the Redis series (django-redis says `redis`, Django's own backend `native_redis`).
   * @default 'redis'
   */
  redisBackend?: string | undefined
  /**
   * `backend` label of in-process caches (`instrumentCache`, `cache.wrap`, `recordCacheGet`)
   * when the call names none.
   * @default 'locmem'
   */
  backend?: string | undefined
}

/** The `worker` option: which BullMQ queues to follow. */
export interface WorkerMetricsOptions {
  /**
   * Redis URL of the queues, as the command's `--broker`.
   * @default process.env.BROKER_URL ?? 'redis://localhost:6379/0'
   */
  broker?: string | undefined
  /**
   * Queue names to follow. Unset: every queue found under `prefix`, looked up again every 30 s.
   * @default undefined
   */
  queues?: string[] | undefined
  /**
   * BullMQ key prefix (BullMQ's `prefix` option).
   * @default 'bull'
   */
  prefix?: string | undefined
}

export interface MetricsAuthOptions {
  /** Accept `Authorization: Bearer <token>`. @default undefined */
  bearerToken?: string | undefined
  /** Accept HTTP basic authentication with these credentials. @default undefined */
  basic?: { username: string, password: string } | undefined
  /** Custom check (IP allow-list, another auth plugin); runs when no credential option matched. @default undefined */
  check?: ((request: FastifyRequest) => boolean | Promise<boolean>) | undefined
}

/** Per-route settings, in the route's `config.metrics`. */
export interface RouteMetricsConfig {
  /** The `view` label for this route, instead of its URL template (django's URL name). @default the route's URL template, with its prefix */
  view?: string | undefined
  /** Do not measure this route. @default false */
  exclude?: boolean | undefined
}

/** What the plugin decorates the Fastify instance with, as `fastify.upstreamMetrics`. */
export interface UpstreamMetrics {
  /**
   * Meter for the app's own metrics: they appear on the same `/metrics`, named as OpenTelemetry's
   * OTLP → Prometheus translation names them, each instrument capped at `cardinalityLimit` series.
   */
  readonly meter: Meter
  /** Serves the scrape; mount it yourself when `path` is `false`. */
  readonly handler: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  /** The current exposition, in text 0.0.4 (what `/metrics` answers a scraper that does not ask for OpenMetrics). */
  metrics(): Promise<string>
  /** Where the internal listener (option `listener`) is bound, once registered. */
  readonly listenerAddress: { host: string, port: number } | undefined
  /** Cache metrics of this instance: wrap an in-process cache, or record a get by hand. */
  readonly cache: UpstreamCacheMetrics
  /**
   * With `otlp` on, exports now (e.g. before a short-lived job exits) and resolves when the
   * export succeeded or failed, within `otlp.timeoutMs`; never rejects. Without push, resolves at once.
   */
  flush(): Promise<void>
}
