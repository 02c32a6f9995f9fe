import type { InstrumentationBase, InstrumentationModuleDefinition } from '@opentelemetry/instrumentation'
import { RedisInstrumentation } from '@opentelemetry/instrumentation-redis'
import type { PatchSpec } from '../patch'
import { preserveForeignWrappers } from './foreign'
import { GetSpan, readTracerProvider } from './spans'

const QUERY_TEXT = 'db.query.text'

/**
 * node-redis v4 to v6 (`redis`, `@redis/client`), through OpenTelemetry's redis
 * instrumentation. Its `RedisInstrumentation` only delegates to one inner instrumentation
 * per major line and declares no module of its own, so patch.ts is handed the inner one for
 * `@redis/client` (redis 2 and 3, years out of support, are left out).
 */
export function createNodeRedisInstrumentation (): InstrumentationBase {
  const outer = new RedisInstrumentation({
    enabled: false,
    requireParentSpan: false,
    // Never a statement: the number of keys of an MGET, read back when its span starts.
    dbStatementSerializer: (command, args) => command.toLowerCase() === 'mget' ? String(args.length) : '',
    responseHook (span, _command, _args, response) {
      if (span instanceof GetSpan) span.resolved(response)
    }
  })
  // Span names are "redis-GET", "redis-MGET".
  outer.setTracerProvider(readTracerProvider(
    (name) => name.startsWith('redis-') ? name.slice(6) : name,
    (options) => Number(options?.attributes?.[QUERY_TEXT]) || 1
  ))
  const inner = (outer as unknown as { instrumentationV4_V5?: InstrumentationBase }).instrumentationV4_V5
  if (inner === undefined) throw new Error('upstream-metrics: @opentelemetry/instrumentation-redis has no node-redis v4+ instrumentation')
  for (const definition of (inner as unknown as { _modules?: InstrumentationModuleDefinition[] })._modules ?? []) {
    for (const file of definition.files ?? []) preserveForeignWrappers(file)
  }
  return inner
}

export const NODE_REDIS_PATCH: PatchSpec = {
  key: 'node-redis',
  create: createNodeRedisInstrumentation
}
