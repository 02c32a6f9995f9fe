import type { Attributes, HrTime, SpanContext } from '@opentelemetry/api'
import { hrTime } from '@opentelemetry/core'
import { OVERFLOW_ATTRIBUTE, type MetricSpec } from './names'

/**
 * Pre-aggregated series, bumped on the hot path with plain arithmetic and handed to
 * OpenTelemetry at collect time (see producer.ts): an OpenTelemetry `add`/`record`
 * pair costs ~1.6 µs here, and the django contract needs a dozen per request.
 */
export interface Cell {
  readonly attributes: Attributes
  value: number
  /** When the series was created: its OpenTelemetry start time, and its `_created` value. */
  readonly startTime: HrTime
}

/** A trace that made one observation of a bucket (OpenMetrics writes it after the bucket's line). */
export interface Exemplar {
  /** `trace_id`, `span_id`: written in this order. */
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
  /** Seconds since the epoch, as written (`1733475600.123`). */
  readonly timestamp?: string
}

/** A histogram point's value as the producer hands it over: one optional exemplar per bucket (same index as `counts`). */
export interface ExemplarBuckets {
  readonly exemplars?: ReadonlyArray<Exemplar | undefined>
}

export interface HistogramCell extends Cell {
  /** Per-bucket (not cumulative) counts; the last one is +Inf. */
  readonly counts: number[]
  sum: number
  /** One exemplar per bucket (same index as `counts`), kept only when exemplars are recorded. */
  exemplars?: Array<Exemplar | undefined>
}

export class Family<C extends Cell = Cell> {
  readonly cells = new Map<string | number | undefined, C>()
  private overflowCell: C | undefined

  /** Exposed name (namespace applied), before the counter `_total` rule. */
  readonly name: string
  /** The exposed name and the spec's alias names, each carrying the same series. */
  readonly names: readonly string[]

  constructor (
    readonly spec: MetricSpec,
    /** `<namespace>_`, or '' for families that are never namespaced. */
    prefix: string,
    readonly limit: number,
    readonly bounds: readonly number[] = []
  ) {
    this.name = prefix + spec.name
    this.names = [spec.name, ...(spec.aliases ?? [])].map((n) => prefix + n)
    if (spec.labels.length === 0) this.cell()
  }

  /**
   * The series for these label values (in `spec.labels` order; `undefined` leaves a label out,
   * a number stays a number for OpenTelemetry); past the limit, the overflow series.
   */
  cell (...values: Array<string | number | undefined>): C {
    const key = values.length === 1 ? values[0] : values.join('\u0000')
    const found = this.cells.get(key)
    if (found !== undefined) return found
    if (this.cells.size >= this.limit - 1 && values.length > 0) return this.overflow()
    const attributes: Attributes = {}
    for (let i = 0; i < values.length; i++) {
      if (values[i] !== undefined) attributes[this.spec.labels[i]!] = values[i]
    }
    const created = this.create(attributes)
    this.cells.set(key, created)
    return created
  }

  private overflow (): C {
    this.overflowCell ??= this.create({ [OVERFLOW_ATTRIBUTE]: 'true' })
    return this.overflowCell
  }

  private create (attributes: Attributes): C {
    const startTime = hrTime()
    const cell: Cell = this.spec.type === 'histogram'
      ? { attributes, value: 0, startTime, sum: 0, counts: new Array<number>(this.bounds.length + 1).fill(0), exemplars: undefined } as HistogramCell
      : { attributes, value: 0, startTime }
    return cell as C
  }

  * series (): IterableIterator<C> {
    yield * this.cells.values()
    if (this.overflowCell !== undefined) yield this.overflowCell
  }
}

/**
 * Counts one observation; `value` of a histogram cell is its count. `span`: the sampled span
 * active at the observation (see exemplars.ts), kept as its bucket's exemplar.
 */
export function observe (cell: HistogramCell, bounds: readonly number[], v: number, exemplar?: Exemplar): void {
  observeIn(cell, bucketOf(bounds, v), v, exemplar)
}

/** The index of the bucket `v` falls in: the first bound it does not exceed, else the `+Inf` bucket. */
export function bucketOf (bounds: readonly number[], v: number): number {
  let i = 0
  const n = bounds.length
  while (i < n && v > bounds[i]!) i++
  return i
}

/** `observe` with the bucket already found: histograms with the same bounds that observe one value share the search. */
export function observeIn (cell: HistogramCell, bucket: number, v: number, exemplar?: Exemplar): void {
  cell.counts[bucket]!++
  cell.sum += v
  cell.value++
  if (exemplar !== undefined) (cell.exemplars ??= new Array<Exemplar | undefined>(cell.counts.length).fill(undefined))[bucket] = exemplar
}

/** An observation's exemplar, made once and shared by the histograms that observe the same value. */
export function exemplarOf (span: SpanContext, value: number): Exemplar {
  return { labels: { trace_id: span.traceId, span_id: span.spanId }, value, timestamp: (Date.now() / 1000).toFixed(3) }
}

/** `namespaced: false` keeps a family's names as declared (the Celery exporter's, which dashboards query as such). */
export interface FamilyOptions { namespaced?: boolean }

export class Store {
  readonly families: Family[] = []
  private readonly prefix: string

  constructor (namespace: string, private readonly limit: number) {
    this.prefix = namespace === '' ? '' : `${namespace}_`
  }

  counter (spec: MetricSpec, options?: FamilyOptions): Family {
    return this.add(new Family(spec, this.prefixFor(options), this.limit))
  }

  gauge (spec: MetricSpec, options?: FamilyOptions): Family {
    return this.counter(spec, options)
  }

  histogram (spec: MetricSpec, bounds: readonly number[], options?: FamilyOptions): Family<HistogramCell> {
    return this.add(new Family<HistogramCell>(spec, this.prefixFor(options), this.limit, bounds))
  }

  private prefixFor (options: FamilyOptions | undefined): string {
    return options?.namespaced === false ? '' : this.prefix
  }

  private add<F extends Family<any>>(family: F): F {
    this.families.push(family)
    return family
  }
}
