import {
  INVALID_SPAN_CONTEXT, SpanStatusCode, createNoopMeter,
  type Attributes, type Context, type Exception, type Histogram, type Meter, type MeterProvider, type MetricOptions,
  type Span, type SpanAttributes, type SpanAttributeValue, type SpanContext, type SpanOptions, type SpanStatus,
  type Tracer, type TracerProvider, type UpDownCounter
} from '@opentelemetry/api'
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg'
import { sampledSpan } from '../exemplars'
import type { PatchSpec } from '../patch'
import { errorType } from './errors'
import { StatementCache, type ModelStatement } from './sql'

/**
 * The stock `@opentelemetry/instrumentation-pg` does the patching and wraps every query;
 * this file gives it a tracer of our own whose spans are plain records of one query
 * (text, connection attributes, result, SQLSTATE, start time). When a span ends, the hub
 * hands the finished query to every registered plugin instance (a sink), which bumps its
 * store cells. No span is exported, the global tracer and context are untouched, and an
 * app's own tracing keeps working beside it.
 */

export interface ConnectionInfo {
  database?: string
  host?: string
  port?: number
}

export interface ModelChange {
  readonly statement: ModelStatement
  readonly rows: number
}

export interface DbSink {
  /** Whether this sink keeps exemplars: the query's span is looked up only if one does. */
  readonly exemplars: boolean
  query: (q: FinishedQuery) => void
  connect: (connection: ConnectionInfo, ok: boolean) => void
  /** A failure while measuring: never let it reach the query's caller. */
  fault: (err: unknown) => void
}

export interface FinishedQuery {
  /** The span attributes of the instrumentation: `db.namespace`, `server.address`, `server.port`. */
  readonly attributes: Attributes | undefined
  readonly seconds: number
  /** The class psycopg2 would have raised (django_db_errors_total's `type`), if the query failed. */
  readonly error: string | undefined
  readonly changes: readonly ModelChange[] | undefined
  /** The app's sampled span active when the query was sent, if a sink keeps exemplars. */
  readonly span: SpanContext | undefined
}

/** One query as a driver reports it: pg's through its instrumentation's span, postgres.js's through its diagnostics channel. */
export interface QueryRecord {
  readonly attributes: Attributes | undefined
  /** `performance.now()` when the query was issued. */
  readonly start: number
  readonly text: string | undefined
  /** pg's result (or array of results): `command` and `rowCount` are read. */
  readonly result: unknown
  readonly failed: boolean
  readonly code: string | undefined
  readonly message: string | undefined
  /** Whether the error came from the server (a SQLSTATE there is one, not an errno). */
  readonly fromServer: boolean
  /** The app's sampled span active when the query was sent (pg only), if a sink keeps exemplars. */
  readonly parent?: SpanContext | undefined
}

const CODE = /\(code: ([0-9A-Z]{5})\)/
/** pg names the errors the server sent `error` (its protocol message name). */
const FROM_SERVER = /of type 'error' occurred/
const OPS = new Set(['INSERT', 'UPDATE', 'DELETE'])

abstract class RecordSpan implements Span {
  failed = false
  code: string | undefined
  fromServer = false
  message: string | undefined
  readonly start = performance.now()

  constructor (protected readonly hub: PgHub, readonly attributes: Attributes | undefined, readonly parent: SpanContext | undefined) {}

  spanContext (): SpanContext { return INVALID_SPAN_CONTEXT }
  setAttribute (_key: string, _value: SpanAttributeValue): this { return this }
  setAttributes (_attributes: SpanAttributes): this { return this }
  addEvent (): this { return this }
  addLink (): this { return this }
  addLinks (): this { return this }
  updateName (): this { return this }
  isRecording (): boolean { return false }

  setStatus (status: SpanStatus): this {
    if (status.code === SpanStatusCode.ERROR) {
      this.failed = true
      this.message = status.message
    }
    return this
  }

  recordException (exception: Exception): void {
    this.failed = true
    // The instrumentation passes a sanitised "PostgreSQL error of type 'error' occurred (code: 23505)".
    if (typeof exception === 'string') {
      this.code = CODE.exec(exception)?.[1]
      this.fromServer = FROM_SERVER.test(exception)
    } else if (typeof exception === 'object' && exception !== null) {
      const { code, name } = exception as { code?: unknown, name?: unknown }
      if (typeof code === 'string') this.code = code
      this.fromServer = name === 'error'
    }
  }

  abstract end (): void
}

class QuerySpan extends RecordSpan {
  text: string | undefined
  result: unknown

  override setAttribute (key: string, value: SpanAttributeValue): this {
    if (key === 'db.query.text' && typeof value === 'string') this.text = value
    return this
  }

  end (): void {
    // Runs inside the instrumentation's promise or callback chain: a throw here would
    // reject the app's query or skip its callback.
    try {
      this.hub.finishQuery(this)
    } catch (err) {
      this.hub.fault(err)
    }
  }
}

class NoopSpan extends RecordSpan {
  end (): void {}
}

interface FanoutTarget {
  readonly provider: MeterProvider
  readonly meter: Meter
}

/** Routes the instrumentation's own semantic-convention instruments to the instances that asked for them. */
class FanoutMeterProvider implements MeterProvider {
  readonly targets: FanoutTarget[] = []
  private readonly created: Array<{ kind: 'histogram' | 'updown', name: string, options: MetricOptions | undefined, per: Map<MeterProvider, Histogram | UpDownCounter> }> = []
  private readonly meter: Meter

  constructor (private readonly scope: string, private readonly version: string) {
    const noop = createNoopMeter()
    const self = this
    this.meter = Object.assign(Object.create(noop) as Meter, {
      createHistogram (name: string, options?: MetricOptions): Histogram {
        const entry = self.track('histogram', name, options)
        return { record (value: number, attributes?: Attributes) { for (const i of entry.per.values()) (i as Histogram).record(value, attributes) } }
      },
      createUpDownCounter (name: string, options?: MetricOptions): UpDownCounter {
        const entry = self.track('updown', name, options)
        return { add (value: number, attributes?: Attributes) { for (const i of entry.per.values()) (i as UpDownCounter).add(value, attributes) } }
      }
    })
  }

  get active (): boolean {
    return this.targets.length > 0
  }

  getMeter (): Meter {
    return this.meter
  }

  private track (kind: 'histogram' | 'updown', name: string, options: MetricOptions | undefined) {
    const previous = this.created.findIndex((c) => c.name === name)
    if (previous !== -1) this.created.splice(previous, 1)
    const entry = { kind, name, options, per: new Map<MeterProvider, Histogram | UpDownCounter>() }
    for (const t of this.targets) entry.per.set(t.provider, this.instrument(t.meter, kind, name, options))
    this.created.push(entry)
    return entry
  }

  private instrument (meter: Meter, kind: 'histogram' | 'updown', name: string, options: MetricOptions | undefined): Histogram | UpDownCounter {
    return kind === 'histogram' ? meter.createHistogram(name, options) : meter.createUpDownCounter(name, options)
  }

  add (provider: MeterProvider): void {
    const meter = provider.getMeter(this.scope, this.version)
    this.targets.push({ provider, meter })
    for (const c of this.created) c.per.set(provider, this.instrument(meter, c.kind, c.name, c.options))
  }

  remove (provider: MeterProvider): void {
    const at = this.targets.findIndex((t) => t.provider === provider)
    if (at !== -1) this.targets.splice(at, 1)
    for (const c of this.created) c.per.delete(provider)
  }
}

/** One per process (it lives on the shared instrumentation): fans finished spans out to the sinks. */
export class PgHub implements TracerProvider {
  readonly sinks: DbSink[] = []
  /** Some sink keeps exemplars. */
  exemplars = false
  readonly meters: FanoutMeterProvider
  private readonly statements = new StatementCache()
  private readonly noop: NoopSpan
  private readonly tracer: Tracer

  constructor (version: string) {
    this.meters = new FanoutMeterProvider('@opentelemetry/instrumentation-pg', version)
    this.noop = new NoopSpan(this, undefined, undefined)
    const hub = this
    this.tracer = {
      startSpan (name: string, options?: SpanOptions, _context?: Context): Span {
        if (hub.sinks.length === 0 || !name.startsWith('pg.query')) return hub.noop
        // Called synchronously by the app's query() call, in its context: a callback or a result
        // may later run in the context of whoever opened the connection.
        return new QuerySpan(hub, options?.attributes, hub.exemplars ? sampledSpan() : undefined)
      },
      startActiveSpan (...args: unknown[]): never {
        const fn = args[args.length - 1] as (span: Span) => never
        return fn(hub.noop)
      }
    }
  }

  getTracer (): Tracer {
    return this.tracer
  }

  add (sink: DbSink): void {
    this.sinks.push(sink)
    this.exemplars = this.sinks.some((s) => s.exemplars)
  }

  remove (sink: DbSink): void {
    const at = this.sinks.indexOf(sink)
    if (at !== -1) this.sinks.splice(at, 1)
    this.exemplars = this.sinks.some((s) => s.exemplars)
  }

  finishQuery (span: QueryRecord): void {
    const sinks = this.sinks
    if (sinks.length === 0) return
    const seconds = (performance.now() - span.start) / 1000
    let changes: ModelChange[] | undefined
    const result = span.result
    if (!span.failed && result !== undefined && span.text !== undefined) {
      if (Array.isArray(result)) {
        const parsed = this.statements.many(span.text, result.length)
        for (let i = 0; i < result.length; i++) {
          const change = this.change(parsed[i], result[i])
          if (change !== undefined) (changes ??= []).push(change)
        }
      } else {
        const command = (result as { command?: unknown }).command
        if (typeof command === 'string' && OPS.has(command)) {
          const change = this.change(this.statements.get(span.text), result)
          if (change !== undefined) changes = [change]
        }
      }
    }
    const finished: FinishedQuery = {
      attributes: span.attributes,
      seconds,
      error: span.failed ? errorType(span.code, span.message, span.fromServer) : undefined,
      changes,
      span: span.parent
    }
    for (let i = 0; i < sinks.length; i++) sinks[i]!.query(finished)
  }

  /** Counted only when the statement parsed and the server reports the same command. */
  private change (statement: ModelStatement | undefined, result: unknown): ModelChange | undefined {
    if (statement === undefined || typeof result !== 'object' || result === null) return undefined
    const { command, rowCount } = result as { command?: unknown, rowCount?: unknown }
    if (command !== statement.op) return undefined
    return { statement, rows: typeof rowCount === 'number' ? rowCount : 0 }
  }

  connected (connection: ConnectionInfo, ok: boolean): void {
    try {
      for (let i = 0; i < this.sinks.length; i++) this.sinks[i]!.connect(connection, ok)
    } catch (err) {
      this.fault(err)
    }
  }

  fault (err: unknown): void {
    for (const sink of this.sinks) {
      try {
        sink.fault(err)
      } catch {}
    }
  }

  static of (instrumentation: PgInstrumentation): PgHub {
    return (instrumentation as unknown as { [kHub]: PgHub })[kHub]
  }
}

const kHub = Symbol.for('upstream-metrics.pg-hub')

const SQL_COMMANDS = new Set([
  'ABORT', 'ALTER', 'ANALYZE', 'BEGIN', 'CALL', 'CHECKPOINT', 'CLOSE', 'CLUSTER', 'COMMENT', 'COMMIT', 'COPY', 'CREATE',
  'DEALLOCATE', 'DECLARE', 'DELETE', 'DISCARD', 'DO', 'DROP', 'END', 'EXECUTE', 'EXPLAIN', 'FETCH', 'GRANT', 'IMPORT',
  'INSERT', 'LISTEN', 'LOAD', 'LOCK', 'MERGE', 'MOVE', 'NOTIFY', 'PREPARE', 'REASSIGN', 'REFRESH', 'REINDEX', 'RELEASE',
  'RESET', 'REVOKE', 'ROLLBACK', 'SAVEPOINT', 'SECURITY', 'SELECT', 'SET', 'SHOW', 'START', 'TABLE', 'TRUNCATE',
  'UNLISTEN', 'UPDATE', 'VACUUM', 'VALUES', 'WITH'
])

type ConnectFn = (this: PgClientLike, callback?: (err?: unknown) => void) => unknown
interface PgClientLike {
  connectionParameters?: { database?: string, host?: string, port?: number }
}

/**
 * New connections are counted by our own `Client#connect` wrapper, installed through the
 * instrumentation's patch (so patch.ts still owns it): its connect spans are off because
 * the pool's would cost a URL parse on every checkout.
 */
function connectPatch (hub: PgHub) {
  return (original: ConnectFn): ConnectFn => function connect (this: PgClientLike, callback?: (err?: unknown) => void) {
    if (hub.sinks.length === 0) return original.call(this, callback)
    const p = this.connectionParameters
    const info: ConnectionInfo = { database: p?.database, host: p?.host, port: p?.port }
    if (typeof callback === 'function') {
      return original.call(this, function (this: unknown, err?: unknown, ...rest: unknown[]) {
        hub.connected(info, err === undefined || err === null)
        return (callback as (...args: unknown[]) => unknown).call(this, err, ...rest)
      })
    }
    const result = original.call(this)
    if (result instanceof Promise) result.then(() => hub.connected(info, true), () => hub.connected(info, false))
    return result
  }
}

const kOurs = Symbol.for('upstream-metrics.pg-wrapper')
type AnyFn = (...args: unknown[]) => unknown
type Proto = Record<string, unknown>

function define (target: object, name: PropertyKey, value: unknown): void {
  Object.defineProperty(target, name, { configurable: true, writable: true, enumerable: false, value })
}

/**
 * Wraps `proto[name]` on top of whatever is there, shimmer-style (`__original`, `__unwrap`,
 * `__wrapped`), without first unwrapping another instrumentation's wrapper as the stock
 * patch does: an app's own OpenTelemetry pg tracing, set up first, keeps working. Set up
 * later (an SDK started after `register`), the stock patch unwraps ours before wrapping:
 * that unwrap leaves ours in place, beneath it, so both keep measuring; only unstack removes ours.
 */
function stack (proto: Proto, name: string, wrapper: (original: AnyFn) => AnyFn): void {
  unstack(proto, name)
  const original = proto[name]
  // Ours under another wrapper (patched through pg's main module and its client file) is still live.
  if (typeof original !== 'function' || hasOurWrapper(original)) return
  const wrapped = wrapper(original as AnyFn)
  define(wrapped, '__original', original)
  define(wrapped, '__unwrap', () => {})
  define(wrapped, '__wrapped', true)
  define(wrapped, kOurs, true)
  define(proto, name, wrapped)
}

/** Removes our wrapper when it is on top (one stacked above ours stays, and ours goes idle). */
function unstack (proto: Proto, name: string): void {
  const current = proto[name] as { [kOurs]?: boolean, __original?: unknown } | undefined
  if (current?.[kOurs] === true) define(proto, name, current.__original)
}

/** Whether our wrapper is anywhere in the chain of wrappers of `fn`. */
export function hasOurWrapper (fn: unknown): boolean {
  for (let f = fn as { [kOurs]?: boolean, __original?: unknown } | undefined, i = 0; f !== undefined && i < 10; f = f.__original as typeof f, i++) {
    if (f[kOurs] === true) return true
  }
  return false
}

function moduleValue<T> (module: unknown): T {
  const m = module as { [Symbol.toStringTag]?: string, default?: T }
  return (m?.[Symbol.toStringTag] === 'Module' ? m.default : module) as T
}

interface PrivateApi {
  recordOperationDuration: (attributes: unknown, start: unknown) => void
  _setPoolConnectEventListeners: (pool: unknown) => void
  _getClientQueryPatch: () => (original: AnyFn) => AnyFn
  _getClientConnectPatch: () => (original: AnyFn) => AnyFn
  _getPoolConnectPatch: () => (original: AnyFn) => AnyFn
  _getPoolEndPatch: () => (original: AnyFn) => AnyFn
  _modules: Array<{ name: string, patch?: (m: unknown) => unknown, unpatch?: (m: unknown) => unknown, files?: Array<{ patch: (m: unknown) => unknown, unpatch: (m: unknown) => unknown }> }>
}

function createPgInstrumentation (): PgInstrumentation {
  const instrumentation = new PgInstrumentation({
    enabled: false,
    ignoreConnectSpans: true,
    responseHook (span, info) {
      if (span instanceof QuerySpan) span.result = info.data
    }
  })
  const hub = new PgHub(instrumentation.instrumentationVersion)
  Object.defineProperty(instrumentation, kHub, { value: hub })
  instrumentation.setTracerProvider(hub)
  instrumentation.setMeterProvider(hub.meters)
  const self = instrumentation as unknown as PrivateApi

  // The stock wrappers, applied with stack() instead of the stock unwrap-then-wrap.
  const patchClient = (client: unknown) => {
    const proto = moduleValue<{ prototype?: Proto } | undefined>(client)?.prototype
    if (proto === undefined) return
    stack(proto, 'query', self._getClientQueryPatch())
    stack(proto, 'connect', connectPatch(hub) as unknown as (original: AnyFn) => AnyFn)
  }
  const unpatchClient = (client: unknown) => {
    const proto = moduleValue<{ prototype?: Proto } | undefined>(client)?.prototype
    if (proto === undefined) return
    unstack(proto, 'query')
    unstack(proto, 'connect')
  }
  for (const definition of self._modules) {
    if (definition.name === 'pg') {
      definition.patch = (m) => { patchClient(moduleValue<{ Client?: unknown }>(m)?.Client); return m }
      definition.unpatch = (m) => { unpatchClient(moduleValue<{ Client?: unknown }>(m)?.Client); return m }
      for (const file of definition.files ?? []) {
        file.patch = (m) => { patchClient(m); return m }
        file.unpatch = (m) => { unpatchClient(m); return m }
      }
    } else if (definition.name === 'pg-pool') {
      definition.patch = (m) => {
        const proto = moduleValue<{ prototype?: Proto } | undefined>(m)?.prototype
        if (proto !== undefined) {
          stack(proto, 'connect', self._getPoolConnectPatch())
          stack(proto, 'end', self._getPoolEndPatch())
        }
        return m
      }
      definition.unpatch = (m) => {
        const proto = moduleValue<{ prototype?: Proto } | undefined>(m)?.prototype
        if (proto !== undefined) {
          unstack(proto, 'connect')
          unstack(proto, 'end')
        }
        return m
      }
    }
  }

  // The pool gauges' listeners run on every checkout and release: only for semconv.
  const listen = self._setPoolConnectEventListeners
  self._setPoolConnectEventListeners = function (this: unknown, pool: unknown) {
    if (hub.meters.active) listen.call(this, pool)
  }

  // Its semantic-convention histogram costs an attributes copy and two clock reads per
  // query: skipped unless an instance turned those metrics on.
  const record = self.recordOperationDuration
  const meters = hub.meters
  self.recordOperationDuration = function (this: unknown, attributes: unknown, start: unknown) {
    if (!meters.active) return
    // The stock operation name is the text's first word: for odd texts, SQL in a label.
    const a = attributes as Record<string, unknown>
    const op = a['db.operation.name']
    if (typeof op === 'string' && !SQL_COMMANDS.has(op)) a['db.operation.name'] = 'OTHER'
    record.call(this, attributes, start)
  }
  return instrumentation
}

export const PG_PATCH: PatchSpec<PgInstrumentation> = {
  key: 'pg',
  create: createPgInstrumentation,
  verify (name, exports) {
    const e = exports as { Client?: { prototype?: { query?: unknown } }, prototype?: { connect?: unknown } }
    if (name === 'pg') return hasOurWrapper(e.Client?.prototype?.query)
    if (name === 'pg-pool') return hasOurWrapper(e.prototype?.connect)
    return true
  }
}
