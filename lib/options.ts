import type { ResolvedCacheOptions } from './cache'
import { DJANGO_LATENCY_BUCKETS } from './names'
import { resolveOtlp, type ResolvedOtlp } from './otlp/options'
import { PM2_DOC, pm2Cluster } from './pm2'
import { describe, kind, show, showUrl } from './redact'
import { RESERVED_LABELS } from './http/custom-labels'
import type { DbConnectionInfo, DbModels, HttpLabelFunction, MetricsAuthOptions, MigrationsOptions, MigrationTool, UpstreamMetricsOptions } from './types'
import { fail, isPlainObject, onlyKeys } from './validate'
import { validateBroker, validatePrefix, validateQueue } from './worker/options'

export interface ResolvedMigrations {
  client: MigrationsOptions['client']
  tool: MigrationTool | undefined
  table: string | undefined
  dir: string | undefined
  connection: string
  count: MigrationsOptions['count']
}

export interface ResolvedDb {
  enabled: boolean
  alias: string | ((connection: DbConnectionInfo) => string)
  defaultSchema: string
  models: DbModels | undefined
  semconvMetrics: boolean
  migrations: ResolvedMigrations | undefined
}

export interface ResolvedHttp {
  semconvMetrics: boolean
  /** `http.labels`, in the order given. */
  labels: ReadonlyArray<readonly [string, HttpLabelFunction]>
}

export interface ResolvedOptions {
  path: string | false
  namespace: string
  latencyBuckets: readonly number[]
  runtimeMetrics: boolean
  excludePaths: Array<string | RegExp>
  countScrape: boolean
  openMetrics: boolean
  createdSeries: boolean
  cardinalityLimit: number
  exemplars: boolean
  http: ResolvedHttp
  collectTimeoutMs: number
  auth: MetricsAuthOptions | undefined
  listener: { host: string, port: number } | undefined
  cluster: { timeoutMs: number } | undefined
  db: ResolvedDb
  cache: ResolvedCacheOptions | false
  worker: { broker: string, queues: string[] | undefined, prefix: string } | undefined
  otlp: ResolvedOtlp | undefined
}

const KNOWN = ['path', 'namespace', 'latencyBuckets', 'runtimeMetrics', 'excludePaths', 'countScrape', 'openMetrics', 'createdSeries', 'cardinalityLimit', 'exemplars', 'http', 'collectTimeoutMs', 'auth', 'listener', 'cluster', 'db', 'cache', 'worker', 'otlp']
/**
 * Fastify's own register options, and what fastify-cli's test helper adds (`skipOverride`): accepted and, as Fastify
 * does for every fastify-plugin plugin, without effect (the plugin runs in the context it is registered in).
 */
const REGISTER_KEYS = ['prefix', 'logLevel', 'logSerializers', 'skipOverride']
const FORWARDED_HINT = '; if @fastify/autoload passed your app\'s options along, register the plugin from a wrapper with its own options (docs/apps.md#fastify-cli-and-fastifyautoload)'
const HTTP_KEYS = ['semconvMetrics', 'labels']
const MAX_CUSTOM_LABELS = 5
const DB_KEYS = ['alias', 'defaultSchema', 'models', 'migrations', 'semconvMetrics']
const MIGRATION_KEYS = ['client', 'tool', 'table', 'dir', 'connection', 'count']
const TOOLS: readonly MigrationTool[] = ['node-pg-migrate', 'knex', 'prisma', 'drizzle']

function bool (options: Record<string, unknown>, name: string, fallback: boolean, prefix = ''): boolean {
  const value = options[name]
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') fail(prefix + name, 'must be true or false', describe(value))
  return value
}

function port (option: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 65535) fail(option, 'must be an integer port from 0 to 65535', describe(value))
  return value
}

function auth (value: unknown): MetricsAuthOptions | undefined {
  if (value === undefined) return undefined
  // Every value under auth may be a credential: errors say its kind only.
  if (!isPlainObject(value)) fail('auth', 'must be an object with bearerToken, basic or check', kind(value))
  const { bearerToken, basic, check } = value
  onlyKeys(value, 'auth.', ['bearerToken', 'basic', 'check'])
  if (bearerToken !== undefined && (typeof bearerToken !== 'string' || bearerToken.length === 0)) fail('auth.bearerToken', 'must be a non-empty string', kind(bearerToken))
  if (basic !== undefined) {
    if (!isPlainObject(basic) || typeof basic.username !== 'string' || typeof basic.password !== 'string' || basic.username === '' || basic.username.includes(':')) {
      fail('auth.basic', 'must be { username, password } with a non-empty username without ":"', isPlainObject(basic) ? `{ username: ${kind(basic.username)}, password: ${kind(basic.password)} }` : kind(basic))
    }
    onlyKeys(basic, 'auth.basic.', ['username', 'password'])
  }
  if (check !== undefined && typeof check !== 'function') fail('auth.check', 'must be a function (request) => boolean | Promise<boolean>', kind(check))
  if (bearerToken === undefined && basic === undefined && check === undefined) fail('auth', 'needs at least one of bearerToken, basic, check', 'none')
  return value as MetricsAuthOptions
}

function httpOptions (value: unknown): ResolvedHttp {
  if (value === undefined) return { semconvMetrics: false, labels: [] }
  if (!isPlainObject(value)) fail('http', 'must be an object { semconvMetrics?, labels? }', describe(value))
  onlyKeys(value, 'http.', HTTP_KEYS)
  return { semconvMetrics: bool(value, 'semconvMetrics', false, 'http.'), labels: httpLabels(value.labels) }
}

function httpLabels (value: unknown): ResolvedHttp['labels'] {
  if (value === undefined) return []
  if (!isPlainObject(value)) fail('http.labels', 'must be an object { labelName: (request) => value }', describe(value))
  const entries = Object.entries(value)
  if (entries.length > MAX_CUSTOM_LABELS) fail('http.labels', `must have at most ${MAX_CUSTOM_LABELS} labels (each multiplies the series)`, `${entries.length} labels`)
  for (const [name, fn] of entries) {
    if (!/^[a-zA-Z_][a-zA-Z0-9_]{0,63}$/.test(name) || name.startsWith('__') || RESERVED_LABELS.includes(name)) {
      fail('http.labels', `has a label name that is not a Prometheus label name or is taken (${RESERVED_LABELS.join(', ')})`, show(name))
    }
    if (typeof fn !== 'function') fail(`http.labels.${name}`, 'must be a function (request) => string | number | boolean | undefined', describe(fn))
  }
  return entries as Array<[string, HttpLabelFunction]>
}

function dbOptions (value: unknown): ResolvedDb {
  if (value === false) return { enabled: false, alias: 'default', defaultSchema: 'public', models: undefined, semconvMetrics: false, migrations: undefined }
  const db = value ?? {}
  if (!isPlainObject(db)) fail('db', 'must be false or an object', describe(db))
  onlyKeys(db, 'db.', DB_KEYS)
  const alias = db.alias ?? 'default'
  if (!(typeof alias === 'function' || (typeof alias === 'string' && alias !== ''))) fail('db.alias', 'must be a non-empty string or a function (connection) => string', show(alias))
  const defaultSchema = db.defaultSchema ?? 'public'
  if (typeof defaultSchema !== 'string' || defaultSchema === '') fail('db.defaultSchema', 'must be a non-empty string', show(defaultSchema))
  const models = dbModels(db.models)
  const semconvMetrics = db.semconvMetrics ?? false
  if (typeof semconvMetrics !== 'boolean') fail('db.semconvMetrics', 'must be true or false', describe(semconvMetrics))
  let migrations: ResolvedMigrations | undefined
  const m = db.migrations
  if (m !== undefined && m !== false) {
    if (!isPlainObject(m)) fail('db.migrations', 'must be false or { client, tool?, table?, dir?, connection? } or { count }', describe(m))
    onlyKeys(m, 'db.migrations.', MIGRATION_KEYS)
    if (m.count !== undefined && typeof m.count !== 'function') fail('db.migrations.count', 'must be a function () => { applied, unapplied }', describe(m.count))
    const client = m.client as { query?: unknown } | undefined
    if (client !== undefined && (typeof client !== 'object' || client === null || typeof client.query !== 'function')) fail('db.migrations.client', 'must be a pg Pool or Client (with query())', describe(client))
    if (m.count === undefined && client === undefined) fail('db.migrations', 'needs a client (pg Pool or Client) or a count function', 'neither')
    if (m.tool !== undefined && !TOOLS.includes(m.tool as MigrationTool)) fail('db.migrations.tool', `must be one of ${TOOLS.join(', ')}`, show(m.tool))
    for (const key of ['table', 'dir', 'connection']) {
      if (m[key] !== undefined && (typeof m[key] !== 'string' || m[key] === '')) fail(`db.migrations.${key}`, 'must be a non-empty string', show(m[key]))
    }
    if (m.table !== undefined && m.tool === undefined) fail('db.migrations.table', 'needs db.migrations.tool (the table alone does not tell the tool)', show(m.table))
    if (m.table !== undefined && !/^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/.test(m.table as string)) fail('db.migrations.table', 'must be a plain table or schema.table name', show(m.table))
    migrations = {
      client: client as MigrationsOptions['client'],
      tool: m.tool as MigrationTool | undefined,
      table: m.table as string | undefined,
      dir: m.dir as string | undefined,
      connection: (m.connection as string | undefined) ?? (typeof alias === 'string' ? alias : 'default'),
      count: m.count as MigrationsOptions['count']
    }
  }
  return { enabled: true, alias: alias as ResolvedDb['alias'], defaultSchema, models, semconvMetrics, migrations }
}

function dbModels (value: unknown): DbModels | undefined {
  if (value === undefined || typeof value === 'function') return value as DbModels | undefined
  if (!isPlainObject(value) || ![Object.prototype, null].includes(Object.getPrototypeOf(value))) fail('db.models', 'must be a record { table: modelName } or a function (table) => string | undefined', describe(value))
  for (const [table, model] of Object.entries(value)) {
    if (table === '') fail('db.models', 'has an empty table name', '""')
    if (typeof model !== 'string' || model === '') fail(`db.models.${table}`, 'must be a non-empty model name', show(model))
  }
  return { ...value } as DbModels
}

const CACHE_KEYS = ['redis', 'redisBackend', 'backend']

function label (option: string, value: unknown, fallback: string): string {
  if (value === undefined) return fallback
  if (typeof value !== 'string' || value === '' || value.length > 100) fail(option, 'must be a non-empty string of at most 100 characters', show(value))
  return value
}

function cache (value: unknown): ResolvedCacheOptions | false {
  if (value === false) return false
  if (value === undefined || value === true) return { redis: true, redisBackend: 'redis', backend: 'locmem' }
  if (!isPlainObject(value)) fail('cache', 'must be true, false or { redis?, redisBackend?, backend? }', describe(value))
  onlyKeys(value, 'cache.', CACHE_KEYS)
  return {
    redis: bool(value, 'redis', true, 'cache.'),
    redisBackend: label('cache.redisBackend', value.redisBackend, 'redis'),
    backend: label('cache.backend', value.backend, 'locmem')
  }
}

function worker (value: unknown): ResolvedOptions['worker'] {
  if (value === undefined || value === false) return undefined
  // A string here is most likely the broker URL: shown without its password.
  if (value !== true && !isPlainObject(value)) fail('worker', 'must be true, false or { broker?, queues?, prefix? }', typeof value === 'string' ? showUrl(value) : describe(value))
  const w = value === true ? {} : value
  onlyKeys(w, 'worker.', ['broker', 'queues', 'prefix'])
  const broker = w.broker ?? process.env.BROKER_URL ?? 'redis://localhost:6379/0'
  const brokerProblem = validateBroker(broker)
  if (brokerProblem !== undefined) fail('worker.broker', brokerProblem, showUrl(broker))
  const queues = w.queues
  if (queues !== undefined && (!Array.isArray(queues) || queues.length === 0 || queues.some((q) => validateQueue(q) !== undefined))) {
    fail('worker.queues', 'must be a non-empty array of BullMQ queue names (no ":"), or unset to follow every queue', describe(queues))
  }
  const prefix = w.prefix ?? 'bull'
  if (validatePrefix(prefix) !== undefined) fail('worker.prefix', 'must be a non-empty string', show(prefix))
  return { broker: broker as string, queues: queues as string[] | undefined, prefix: prefix as string }
}

export function resolveOptions (input: UpstreamMetricsOptions | undefined): ResolvedOptions {
  const options = (input ?? {}) as Record<string, unknown>
  if (!isPlainObject(options)) fail('options', 'must be an object', kind(options))
  onlyKeys(options, '', KNOWN, REGISTER_KEYS, FORWARDED_HINT)

  const path = options.path ?? '/metrics'
  if (path !== false && (typeof path !== 'string' || !path.startsWith('/'))) fail('path', 'must be a path starting with "/" or false', show(path))

  const namespace = options.namespace ?? ''
  if (typeof namespace !== 'string' || (namespace !== '' && !/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(namespace))) {
    fail('namespace', 'must match [a-zA-Z_][a-zA-Z0-9_]* or be empty', show(namespace))
  }

  const latencyBuckets = options.latencyBuckets ?? DJANGO_LATENCY_BUCKETS
  if (!Array.isArray(latencyBuckets) || latencyBuckets.length === 0 ||
      !latencyBuckets.every((b, i) => typeof b === 'number' && Number.isFinite(b) && (i === 0 || b > latencyBuckets[i - 1]))) {
    fail('latencyBuckets', 'must be a non-empty array of finite numbers in increasing order (+Inf is added)', describe(latencyBuckets))
  }

  const excludePaths = options.excludePaths ?? []
  if (!Array.isArray(excludePaths) || !excludePaths.every((p) => typeof p === 'string' || p instanceof RegExp)) {
    fail('excludePaths', 'must be an array of strings and RegExps', describe(excludePaths))
  }

  const cardinalityLimit = options.cardinalityLimit ?? 2000
  if (typeof cardinalityLimit !== 'number' || !Number.isInteger(cardinalityLimit) || cardinalityLimit < 2) {
    fail('cardinalityLimit', 'must be an integer of at least 2', describe(cardinalityLimit))
  }

  const collectTimeoutMs = options.collectTimeoutMs ?? 3000
  if (typeof collectTimeoutMs !== 'number' || !(collectTimeoutMs > 0) || collectTimeoutMs > 2_147_483_647) {
    fail('collectTimeoutMs', 'must be a positive number of milliseconds', describe(collectTimeoutMs))
  }

  let listener: ResolvedOptions['listener']
  if (options.listener !== undefined) {
    const l = options.listener
    if (!isPlainObject(l)) fail('listener', 'must be { host?, port }', describe(l))
    onlyKeys(l, 'listener.', ['host', 'port'])
    if (l.host !== undefined && (typeof l.host !== 'string' || l.host === '')) fail('listener.host', 'must be a host name or address', show(l.host))
    listener = { host: (l.host as string | undefined) ?? '127.0.0.1', port: port('listener.port', l.port) }
  }

  let cluster: ResolvedOptions['cluster']
  if (options.cluster === true) cluster = { timeoutMs: 5000 }
  else if (isPlainObject(options.cluster)) {
    onlyKeys(options.cluster, 'cluster.', ['timeoutMs'])
    const timeoutMs = options.cluster.timeoutMs ?? 5000
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) fail('cluster.timeoutMs', 'must be a positive number of milliseconds', describe(timeoutMs))
    cluster = { timeoutMs }
  } else if (options.cluster !== undefined && options.cluster !== false) fail('cluster', 'must be true, false or { timeoutMs }', describe(options.cluster))
  if (cluster !== undefined && pm2Cluster() !== undefined) {
    fail('cluster', `cannot work in PM2 cluster mode, whose cluster primary is PM2's daemon (it cannot run setupClusterPrimary()); give each instance its own metrics port instead (${PM2_DOC})`, describe(options.cluster))
  }
  const followed = worker(options.worker)
  // Every worker process would follow the same queues: summed, the celery histograms would count each job N times.
  if (cluster !== undefined && followed !== undefined) fail('worker', 'cannot be combined with cluster (run the upstream-metrics-worker command once instead)', 'both')

  return {
    path,
    namespace,
    latencyBuckets,
    runtimeMetrics: bool(options, 'runtimeMetrics', true),
    excludePaths,
    countScrape: bool(options, 'countScrape', true),
    openMetrics: bool(options, 'openMetrics', true),
    createdSeries: bool(options, 'createdSeries', true),
    cardinalityLimit,
    exemplars: bool(options, 'exemplars', true),
    http: httpOptions(options.http),
    collectTimeoutMs,
    auth: auth(options.auth),
    listener,
    cluster,
    db: dbOptions(options.db),
    cache: cache(options.cache),
    worker: followed,
    otlp: resolveOtlp(options.otlp)
  }
}
