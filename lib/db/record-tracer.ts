import {
  INVALID_SPAN_CONTEXT, SpanStatusCode,
  type Attributes, type Context, type Exception, type Span, type SpanAttributes, type SpanAttributeValue,
  type SpanContext, type SpanOptions, type SpanStatus, type Tracer
} from '@opentelemetry/api'
import { sampledSpan } from '../exemplars'
import type { PgHub } from './hub'

/**
 * The tracer handed to `@opentelemetry/instrumentation-pg`: its spans are plain records of one
 * query (text, connection attributes, result, SQLSTATE, start time), given to the hub when they
 * end. No span is exported, the global tracer and context are untouched, and an app's own
 * tracing keeps working beside it.
 */

const CODE = /\(code: ([0-9A-Z]{5})\)/
/** pg names the errors the server sent `error` (its protocol message name). */
const FROM_SERVER = /of type 'error' occurred/

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

/** One query's record; the instrumentation's responseHook sets its `result`. */
export class QuerySpan extends RecordSpan {
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

export function recordTracer (hub: PgHub): Tracer {
  const noop = new NoopSpan(hub, undefined, undefined)
  return {
    startSpan (name: string, options?: SpanOptions, _context?: Context): Span {
      if (hub.sinks.length === 0 || !name.startsWith('pg.query')) return noop
      // Called synchronously by the app's query() call, in its context: a callback or a result
      // may later run in the context of whoever opened the connection.
      return new QuerySpan(hub, options?.attributes, hub.exemplars ? sampledSpan() : undefined)
    },
    startActiveSpan (...args: unknown[]): never {
      const fn = args[args.length - 1] as (span: Span) => never
      return fn(noop)
    }
  }
}
