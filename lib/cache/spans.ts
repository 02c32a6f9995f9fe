import {
  INVALID_SPAN_CONTEXT, context, trace,
  type Span, type SpanAttributeValue, type SpanContext, type SpanOptions, type Tracer, type TracerProvider
} from '@opentelemetry/api'
import type { CacheMetrics } from './metrics'

/** A plugin instance that counts Redis gets, with its `backend` label. */
interface RedisSink {
  readonly metrics: CacheMetrics
  readonly backend: string
}

// On globalThis, like patch.ts's registry: the instrumentations are shared by every copy of this package.
const SINKS = Symbol.for('upstream-metrics.redis-sinks')
const sinks: Set<RedisSink> = ((globalThis as Record<symbol, unknown>)[SINKS] ??= new Set<RedisSink>()) as Set<RedisSink>

export function addRedisSink (metrics: CacheMetrics, backend: string): () => void {
  const sink: RedisSink = { metrics, backend }
  sinks.add(sink)
  return () => { sinks.delete(sink) }
}

function recordRedis (hits: number, misses: number, fails: number): void {
  for (const sink of sinks) sink.metrics.record(sink.backend, hits, misses, fails)
}

export const NON_RECORDING = trace.wrapSpanContext(INVALID_SPAN_CONTEXT)
const OPERATION = 'db.operation.name'

/**
 * The "span" a Redis instrumentation creates for a GET or MGET. It is never exported: it
 * only carries the command to its outcome (the response hook on success, `recordException`
 * on failure), where the outcome becomes cache counts: `null` a miss, any other reply a hit.
 */
export class GetSpan implements Span {
  keys = 1
  private settled = false

  constructor (private readonly many: boolean, private readonly parent: SpanContext) {}

  resolved (response: unknown): void {
    if (this.settled) return
    this.settled = true
    let hits = 0
    let misses = 0
    if (this.many && Array.isArray(response)) {
      for (const value of response) {
        if (value === null) misses++
        else hits++
      }
    } else if (response === null) misses++
    else hits++
    recordRedis(hits, misses, 0)
  }

  /** Not a cache read after all (inside MULTI, or a command sent a second time). */
  ignore (): void {
    this.settled = true
  }

  recordException (exception?: unknown): void {
    // A Redis Cluster redirection is retried by the client, under this same command: its outcome comes later.
    if (this.settled || isRedirection(exception)) return
    this.settled = true
    recordRedis(0, 0, this.keys)
  }

  setAttribute (key: string, value: SpanAttributeValue): this {
    // node-redis names a queued command's transaction only when it ends.
    if (key === OPERATION && isTransaction(value)) this.ignore()
    return this
  }

  spanContext (): SpanContext { return this.parent }
  setAttributes (): this { return this }
  addEvent (): this { return this }
  addLink (): this { return this }
  addLinks (): this { return this }
  setStatus (): this { return this }
  updateName (): this { return this }
  end (): void {}
  isRecording (): boolean { return false }
}

function isRedirection (exception: unknown): boolean {
  const message = (exception as { message?: unknown } | undefined)?.message
  return typeof message === 'string' && /^(MOVED|ASK|TRYAGAIN) /.test(message)
}

// Inside MULTI ioredis replies "QUEUED", not the value, and django-prometheus never sees transactions either.
function isTransaction (operation: unknown): boolean {
  return typeof operation === 'string' && operation.startsWith('MULTI')
}

/**
 * A tracer provider handing out GetSpans for reads and one shared non-recording span for
 * everything else. `command` maps the instrumentation's span name to the Redis command.
 */
export function readTracerProvider (command: (spanName: string) => string, keys?: (options: SpanOptions | undefined) => number): TracerProvider {
  const tracer: Tracer = {
    startSpan (name: string, options?: SpanOptions): Span {
      // node-redis makes its span the active one while the command runs: carrying the current
      // span's context keeps the app's own spans under their real parent.
      const parent = trace.getSpanContext(context.active())
      const cmd = command(name).toLowerCase()
      if ((cmd !== 'get' && cmd !== 'mget') || isTransaction(options?.attributes?.[OPERATION])) {
        return parent === undefined ? NON_RECORDING : trace.wrapSpanContext(parent)
      }
      const span = new GetSpan(cmd === 'mget', parent ?? INVALID_SPAN_CONTEXT)
      if (keys !== undefined) span.keys = keys(options)
      return span
    },
    startActiveSpan (...args: unknown[]): never {
      // Not used by the Redis instrumentations; run the callback with a non-recording span if it ever is.
      const fn = args[args.length - 1] as (span: Span) => never
      return fn(NON_RECORDING)
    }
  }
  return { getTracer: () => tracer }
}
