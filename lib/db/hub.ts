import type { Attributes, SpanContext, Tracer, TracerProvider } from '@opentelemetry/api'
import type { PgInstrumentation } from '@opentelemetry/instrumentation-pg'
import { errorType } from './errors'
import { recordTracer } from './record-tracer'
import { FanoutMeterProvider } from './semconv-meters'
import { StatementCache, type ModelStatement } from './sql'

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

const OPS = new Set(['INSERT', 'UPDATE', 'DELETE'])
const kHub = Symbol.for('upstream-metrics.pg-hub')

/**
 * One per process (it lives on the shared pg instrumentation): turns each finished query of
 * pg or postgres.js into a FinishedQuery and hands it to every registered plugin instance (a
 * sink), which bumps its store cells. As the instrumentation's tracer provider it gives it
 * record-only spans (`record-tracer.ts`); as its meter provider, the semconv fan-out.
 */
export class PgHub implements TracerProvider {
  readonly sinks: DbSink[] = []
  /** Some sink keeps exemplars. */
  exemplars = false
  readonly meters: FanoutMeterProvider
  private readonly statements = new StatementCache()
  private readonly tracer: Tracer

  constructor (version: string) {
    this.meters = new FanoutMeterProvider('@opentelemetry/instrumentation-pg', version)
    this.tracer = recordTracer(this)
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

  /** Makes this the hub that `of(instrumentation)` returns. */
  attachTo (instrumentation: PgInstrumentation): void {
    Object.defineProperty(instrumentation, kHub, { value: this })
  }

  static of (instrumentation: PgInstrumentation): PgHub {
    return (instrumentation as unknown as { [kHub]: PgHub })[kHub]
  }
}
