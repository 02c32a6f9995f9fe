import { PgInstrumentation } from '@opentelemetry/instrumentation-pg'
import type { PatchSpec } from '../patch'
import { PgHub, type ConnectionInfo } from './hub'
import { QuerySpan } from './record-tracer'
import { limitOperationName } from './semconv-meters'
import { hasOurWrapper, stack, unstack, type AnyFn, type Proto } from './wrapper-stack'

/**
 * Patching pg: the stock `@opentelemetry/instrumentation-pg` wraps every query, with our hub
 * (`hub.ts`) as its tracer and meter provider. Its wrappers are applied with `stack()` rather
 * than its own unwrap-then-wrap, and its per-query costs that only semconv metrics need are
 * skipped while no instance asked for them.
 */

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
  hub.attachTo(instrumentation)
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
    limitOperationName(attributes as Record<string, unknown>)
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
