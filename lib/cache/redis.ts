import { InstrumentationNodeModuleFile, isWrapped, type InstrumentationModuleDefinition } from '@opentelemetry/instrumentation'
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis'
import { acquirePatch, type PatchLogger, type PatchSpec } from '../patch'
import { preserveForeignWrappers } from './foreign'
import type { CacheMetrics } from './metrics'
import { NODE_REDIS_PATCH } from './node-redis'
import { GetSpan, addRedisSink, readTracerProvider } from './spans'

type Method = (this: unknown, ...args: unknown[]) => unknown

/** Marks commands already sent once: ioredis sends its offline queue (and cluster redirections) again. A WeakSet cost more in GC. */
const kSent = Symbol('upstream-metrics.sent')

/** The GetSpan whose command the instrumentation is about to send (set by its request hook, taken by `detectEarlyReject`). */
let pending: GetSpan | undefined

/**
 * Connections between a MULTI and its EXEC or DISCARD, where Redis answers `QUEUED` to every
 * command: `multi({ pipeline: false })` sends the app's later GETs as plain commands. Keyed by
 * the socket (a reconnection starts outside any transaction), or the client while it has none.
 */
const inTransaction = new WeakSet<object>()
/** Apps that never send MULTI skip the lookup. */
let transactionSeen = false

function followTransaction (client: unknown, name: unknown): boolean {
  if (name === 'multi') transactionSeen = true
  if (!transactionSeen) return false
  const connection = (client as { stream?: object }).stream ?? client as object
  if (name === 'multi') inTransaction.add(connection)
  else if (name === 'exec' || name === 'discard') inTransaction.delete(connection)
  return inTransaction.has(connection)
}

/**
 * Sits under the instrumentation's `sendCommand` wrapper, where the command object is at hand.
 * A command queued while disconnected is sent again on connect: only its first pass counts.
 * And ioredis rejects some commands synchronously, inside `sendCommand` (client ended,
 * `enableOfflineQueue: false` while disconnected), before the instrumentation hooks
 * `command.reject`: those failures are seen here instead.
 */
function detectEarlyReject (below: Method): Method {
  return function sendCommand (this: unknown, command: unknown) {
    const span = pending
    pending = undefined
    if (typeof command !== 'object' || command === null) return Reflect.apply(below, this, arguments)
    const cmd = command as { name?: unknown, reject?: unknown, [kSent]?: true }
    const queued = followTransaction(this, cmd.name)
    if (span === undefined) return Reflect.apply(below, this, arguments)
    if (cmd[kSent] === true || queued) {
      span.ignore()
      return Reflect.apply(below, this, arguments)
    }
    cmd[kSent] = true
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

function redisPrototype (exports: unknown): Record<string, unknown> | undefined {
  const module = exports as { [Symbol.toStringTag]?: unknown, default?: unknown } | undefined
  const cls = module?.[Symbol.toStringTag] === 'Module' ? module.default : module
  const prototype = (cls as { prototype?: unknown } | undefined)?.prototype
  return typeof prototype === 'object' && prototype !== null ? prototype as Record<string, unknown> : undefined
}

/** Puts the early-reject detector under the instrumentation's `sendCommand` wrapper, and takes it out again. */
function installDetector (definition: InstrumentationModuleDefinition): void {
  const patch = definition.patch
  const unpatch = definition.unpatch
  if (typeof patch !== 'function') return
  const installed = new WeakMap<object, { previous: unknown, detector: Method }>()
  definition.patch = (exports: unknown, version?: string) => {
    const prototype = redisPrototype(exports)
    if (prototype !== undefined && !installed.has(prototype) && typeof prototype.sendCommand === 'function') {
      const detector = detectEarlyReject(prototype.sendCommand as Method)
      installed.set(prototype, { previous: prototype.sendCommand, detector })
      prototype.sendCommand = detector
    }
    return patch.call(definition, exports, version)
  }
  definition.unpatch = (exports: unknown, version?: string) => {
    unpatch?.call(definition, exports, version)
    const prototype = redisPrototype(exports)
    const entry = prototype === undefined ? undefined : installed.get(prototype)
    if (prototype === undefined || entry === undefined) return
    installed.delete(prototype)
    if (prototype.sendCommand === entry.detector) prototype.sendCommand = entry.previous
  }
}

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
  // ioredis names the span after the command itself ("get", "mget").
  instrumentation.setTracerProvider(readTracerProvider((name) => name))
  const definitions = (instrumentation as unknown as { _modules?: InstrumentationModuleDefinition[] })._modules ?? []
  for (const definition of definitions) {
    // Order matters: the detector must end up directly under the instrumentation's wrapper.
    installDetector(definition)
    preserveForeignWrappers(definition)
    oncePerPrototype(definition)
    definition.files.push(classFile(definition))
  }
  return instrumentation
}

const patchedPrototypes = new WeakSet<object>()

/** The class reaches us twice (its file, then the package main): patch it once, unpatch it once. */
function oncePerPrototype (definition: InstrumentationModuleDefinition): void {
  const patch = definition.patch
  const unpatch = definition.unpatch
  if (typeof patch !== 'function') return
  definition.patch = (exports: unknown, version?: string) => {
    const prototype = redisPrototype(exports)
    if (prototype !== undefined) {
      if (patchedPrototypes.has(prototype)) return exports
      patchedPrototypes.add(prototype)
    }
    return patch.call(definition, exports, version)
  }
  definition.unpatch = (exports: unknown, version?: string) => {
    const prototype = redisPrototype(exports)
    if (prototype !== undefined) {
      if (!patchedPrototypes.has(prototype)) return
      patchedPrototypes.delete(prototype)
    }
    unpatch?.call(definition, exports, version)
  }
}

/**
 * `import('ioredis')` from ESM loads the package main through the ESM loader, which the
 * require hook never sees; the main then `require`s `built/Redis.js`, which it does see. So
 * the class is also patched from that file (ioredis 5 and 6 share the layout).
 */
function classFile (definition: InstrumentationModuleDefinition): InstrumentationNodeModuleFile {
  const classOf = (exports: unknown): unknown => (exports as { default?: unknown } | undefined)?.default
  return new InstrumentationNodeModuleFile(
    'ioredis/built/Redis.js',
    ['>=5.0.0 <7'],
    (exports: unknown, version?: string) => {
      definition.patch?.(classOf(exports), version)
      return exports
    },
    (exports: unknown, version?: string) => {
      definition.unpatch?.(classOf(exports), version)
    }
  )
}

/** The patch of ioredis, for `acquirePatch` (the plugin, and the preload entry). */
export const IOREDIS_PATCH: PatchSpec<IORedisInstrumentation> = {
  key: 'ioredis',
  create: createIoredisInstrumentation,
  verify: (_name, exports) => isWrapped(redisPrototype(exports)?.sendCommand)
}

/**
 * Counts the GETs and MGETs of every ioredis and node-redis client into `metrics` under
 * `backend`, until the returned function is called. The instrumentations are patched through
 * patch.ts (shared and reference-counted with the preload entry and other plugin instances);
 * one that cannot be set up is reported to `fault` and does not keep the other from working.
 */
export function countRedisGets (metrics: CacheMetrics, backend: string, fault: (err: unknown) => void, log?: PatchLogger): () => void {
  const removeSink = addRedisSink(metrics, backend)
  const leases: Array<{ release: () => void }> = []
  for (const spec of [IOREDIS_PATCH, NODE_REDIS_PATCH] as PatchSpec[]) {
    try {
      leases.push(acquirePatch(spec, log))
    } catch (err) {
      fault(err)
    }
  }
  return () => {
    removeSink()
    for (const lease of leases) lease.release()
  }
}
