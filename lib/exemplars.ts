import { context, isSpanContextValid, trace, TraceFlags, type SpanContext } from '@opentelemetry/api'

/**
 * A trace attached to one histogram bucket: the span that was active and sampled when an
 * observation fell in that bucket (the most recent one, as Prometheus clients keep it).
 */
export interface Exemplar {
  readonly traceId: string
  readonly spanId: string
  /** The observed value. */
  readonly value: number
  /** When it was observed, in milliseconds since the epoch. */
  readonly timeMs: number
}

/**
 * The active span of the app's own OpenTelemetry (its global context manager), when it is valid
 * and sampled: an unsampled trace is never exported, so its id would lead nowhere. Without a
 * registered context manager this is the API's no-op lookup.
 */
export function sampledSpan (): SpanContext | undefined {
  const span = trace.getSpan(context.active())
  return span === undefined ? undefined : sampled(span.spanContext())
}

export function sampled (spanContext: SpanContext): SpanContext | undefined {
  return (spanContext.traceFlags & TraceFlags.SAMPLED) !== 0 && isSpanContextValid(spanContext) ? spanContext : undefined
}

/** A histogram data point's exemplars, by bucket (the last one is +Inf): what the OpenMetrics writer renders. */
export interface WithExemplars {
  readonly exemplars?: ReadonlyArray<Exemplar | undefined>
}
