import { context, isSpanContextValid, trace, TraceFlags, type Context, type SpanContext } from '@opentelemetry/api'

const API_GLOBALS = Symbol.for('opentelemetry.js.api.1')

/**
 * The active span of the app's own OpenTelemetry (its global context manager), when it is valid
 * and sampled: an unsampled trace is never exported, so its id would lead nowhere. Without a
 * registered context manager this is the API's no-op lookup.
 */
export function sampledSpan (): SpanContext | undefined {
  // Where the API keeps what the app registered: with no context manager there, `context.active()`
  // is the root context, whose lookup costs more than this read (most of an exemplar-less request's share).
  if ((globalThis as Record<symbol, { context?: unknown } | undefined>)[API_GLOBALS]?.context === undefined) return undefined
  const span = trace.getSpan(context.active())
  return span === undefined ? undefined : sampled(span.spanContext())
}

/**
 * The sampled span of a request. @fastify/otel keeps its request span's context on the request
 * (`request.opentelemetry().context`, kept after the span ends) and makes it active only around
 * the handler and hooks that run after its own, not in the `onResponse` that measures the
 * request: that context first, else the active one (instrumentation-http's server span).
 */
export function requestSpan (request: object): SpanContext | undefined {
  const otel = (request as { opentelemetry?: unknown }).opentelemetry
  if (typeof otel === 'function') {
    const ctx = (otel.call(request) as { context?: Context | null } | undefined)?.context
    const span = ctx == null ? undefined : trace.getSpan(ctx)
    if (span !== undefined) return sampled(span.spanContext())
  }
  return sampledSpan()
}

export function sampled (spanContext: SpanContext): SpanContext | undefined {
  return (spanContext.traceFlags & TraceFlags.SAMPLED) !== 0 && isSpanContextValid(spanContext) ? spanContext : undefined
}
