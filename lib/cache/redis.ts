import {
  INVALID_SPAN_CONTEXT, trace,
  type Span, type SpanContext, type SpanOptions, type Tracer, type TracerProvider
} from '@opentelemetry/api'
import { isWrapped, type InstrumentationModuleDefinition } from '@opentelemetry/instrumentation'
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis'
import { acquirePatch, type PatchLogger } from '../patch'
import type { CacheMetrics } from './metrics'

/** A plugin instance that counts Redis gets, with its `backend` label. */
interface RedisSink {
  readonly metrics: CacheMetrics
  readonly backend: string
}

// On globalThis, like patch.ts's registry: the instrumentation is shared by every copy of this package.
const SINKS = Symbol.for('upstream-metrics.redis-sinks')
const sinks: Set<RedisSink> = ((globalThis as Record<symbol, unknown>)[SINKS] ??= new Set<RedisSink>()) as Set<RedisSink>

function recordRedis (hits: number, misses: number, fails: number): void {
  for (const sink of sinks) sink.metrics.record(sink.backend, hits, misses, fails)
}

const NON_RECORDING = trace.wrapSpanContext(INVALID_SPAN_CONTEXT)

/**
 * The "span" the ioredis instrumentation creates for a GET or MGET. It is never exported:
 * it only carries the command from the request hook to its outcome (response hook on
 * success, `recordException` on rejection), where the outcome becomes cache counts.
 */
class GetSpan implements Span {
  keys = 1
  private settled = false

  constructor (private readonly many: boolean) {}

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

  /** A command sent again (ioredis re-sends its offline queue once connected) is already counted by its first span. */
  ignore (): void {
    this.settled = true
  }

  recordException (): void {
    if (this.settled) return
    this.settled = true
    recordRedis(0, 0, this.keys)
  }

  spanContext (): SpanContext { return INVALID_SPAN_CONTEXT }
  setAttribute (): this { return this }
  setAttributes (): this { return this }
  addEvent (): this { return this }
  addLink (): this { return this }
  addLinks (): this { return this }
  setStatus (): this { return this }
  updateName (): this { return this }
  end (): void {}
  isRecording (): boolean { return false }
}

const OPERATION = 'db.operation.name'

/** Hands GetSpans to the instrumentation for reads, a shared non-recording span for everything else. */
const tracer: Tracer = {
  startSpan (name: string, options?: SpanOptions): Span {
    const command = name.toLowerCase()
    if (command !== 'get' && command !== 'mget') return NON_RECORDING
    // Inside MULTI the reply is "QUEUED", not the value; django-prometheus never sees transactions either.
    const operation = options?.attributes?.[OPERATION]
    if (typeof operation === 'string' && operation.startsWith('MULTI')) return NON_RECORDING
    return new GetSpan(command === 'mget')
  },
  startActiveSpan (...args: unknown[]): never {
    // Not used by the ioredis instrumentation; run the callback with a non-recording span if it ever is.
    const fn = args[args.length - 1] as (span: Span) => never
    return fn(NON_RECORDING)
  }
}

const tracerProvider: TracerProvider = { getTracer: () => tracer }

/** The one ioredis instrumentation of this process, shared by every plugin instance. */
export function createIoredisInstrumentation (): IORedisInstrumentation {
  const instrumentation = new IORedisInstrumentation({
    enabled: false,
    // Count reads outside any trace too: without this the hooks only run under a parent span.
    requireParentSpan: false,
    // The statement text is never used; skip serialising every command's arguments.
    dbStatementSerializer: () => '',
    requestHook (span, info) {
      if (span instanceof GetSpan) {
        span.keys = info.cmdArgs.length
        pending = span
      } else pending = undefined
    },
    responseHook (span, _command, _args, response) {
      if (span instanceof GetSpan) span.resolved(response)
    }
  })
  instrumentation.setTracerProvider(tracerProvider)
  const definitions = (instrumentation as unknown as { _modules?: InstrumentationModuleDefinition[] })._modules ?? []
  for (const definition of definitions) chainUnderneath(definition)
  return instrumentation
}

type Method = (this: unknown, ...args: unknown[]) => unknown

/** Commands already sent once: the offline queue sends them again on connect. */
const sent = new WeakSet<object>()

/** The GetSpan whose command the instrumentation is about to send (set by its request hook, taken by `detectEarlyReject`). */
let pending: GetSpan | undefined

/**
 * Sits under the instrumentation's `sendCommand` wrapper, where the command object is at hand.
 * A command queued while disconnected is sent again on connect: only its first pass counts.
 * And ioredis rejects some commands
 * synchronously, inside `sendCommand` (client ended, `enableOfflineQueue: false` while
 * disconnected), before the instrumentation hooks `command.reject`: those failures are
 * seen here instead.
 */
function detectEarlyReject (below: Method): Method {
  return function sendCommand (this: unknown, command: unknown) {
    const span = pending
    pending = undefined
    if (span === undefined || typeof command !== 'object' || command === null) return Reflect.apply(below, this, arguments)
    if (sent.has(command)) {
      span.ignore()
      return Reflect.apply(below, this, arguments)
    }
    sent.add(command)
    const cmd = command as { reject?: unknown }
    const reject = cmd.reject
    if (typeof reject !== 'function') return Reflect.apply(below, this, arguments)
    let early = false
    const watching = function (this: unknown) {
      early = true
      return Reflect.apply(reject, this, arguments)
    }
    cmd.reject = watching
    try {
      return Reflect.apply(below, this, arguments)
    } finally {
      if (cmd.reject === watching) cmd.reject = reject
      if (early) span.recordException()
    }
  }
}

interface Replaced { readonly previous: Method, readonly replacement: Method }

/**
 * Prepares the prototype before the instrumentation patches it: `sendCommand` gets the
 * early-reject detector underneath. And since the ioredis instrumentation unwraps whatever
 * already wraps `sendCommand`/`connect` (the app's own tracing instrumentation would silently
 * lose its spans), a foreign wrapper is kept in the chain behind a plain function. Unpatching
 * puts back exactly what was there.
 */
function chainUnderneath (definition: InstrumentationModuleDefinition): void {
  const patch = definition.patch
  const unpatch = definition.unpatch
  if (typeof patch !== 'function') return
  const replaced = new WeakMap<object, Map<string, Replaced>>()
  definition.patch = (exports: unknown, version?: string) => {
    const prototype = redisClass(exports)?.prototype
    if (prototype !== undefined && !replaced.has(prototype)) {
      const saved = new Map<string, Replaced>()
      const sendCommand = prototype.sendCommand
      if (typeof sendCommand === 'function') {
        const replacement = detectEarlyReject(sendCommand as Method)
        prototype.sendCommand = replacement
        saved.set('sendCommand', { previous: sendCommand as Method, replacement })
      }
      const connect = prototype.connect
      if (typeof connect === 'function' && isWrapped(connect)) {
        const previous = connect as unknown as Method
        const replacement: Method = function (this: unknown) { return Reflect.apply(previous, this, arguments) }
        prototype.connect = replacement
        saved.set('connect', { previous, replacement })
      }
      replaced.set(prototype, saved)
    }
    return patch.call(definition, exports, version)
  }
  definition.unpatch = (exports: unknown, version?: string) => {
    unpatch?.call(definition, exports, version)
    const prototype = redisClass(exports)?.prototype
    const saved = prototype === undefined ? undefined : replaced.get(prototype)
    if (prototype === undefined || saved === undefined) return
    replaced.delete(prototype)
    for (const [name, { previous, replacement }] of saved) {
      if (prototype[name] === replacement) prototype[name] = previous
    }
  }
}

function redisClass (exports: unknown): { prototype: Record<string, unknown> } | undefined {
  const module = exports as { [Symbol.toStringTag]?: unknown, default?: unknown, prototype?: unknown } | undefined
  const cls = module?.[Symbol.toStringTag] === 'Module' ? module.default : module
  const prototype = (cls as { prototype?: unknown } | undefined)?.prototype
  return typeof prototype === 'object' && prototype !== null ? cls as { prototype: Record<string, unknown> } : undefined
}

export const IOREDIS_KEY = 'ioredis'

/**
 * Counts the GETs and MGETs of every ioredis client into `metrics` under `backend`, until
 * the returned function is called. The instrumentation is patched through patch.ts (shared
 * and reference-counted with the preload entry and other plugin instances).
 */
export function countRedisGets (metrics: CacheMetrics, backend: string, log?: PatchLogger): () => void {
  const sink: RedisSink = { metrics, backend }
  sinks.add(sink)
  const lease = acquirePatch({
    key: IOREDIS_KEY,
    create: createIoredisInstrumentation,
    verify: (_name, exports) => isWrapped(redisClass(exports)?.prototype.sendCommand)
  }, log)
  return () => {
    sinks.delete(sink)
    lease.release()
  }
}
