import type { FastifyRequest } from 'fastify'
import type { Faults } from '../faults'
import type { HttpLabelFunction } from '../types'

/**
 * The families django-prometheus's documented extension (`label_metric`) is meant for: those
 * labelled by view. Custom labels are added to each of them after its own labels.
 */
export const LABELLED_FAMILIES = ['byViewTransportMethod', 'latencyByViewMethod', 'byStatusViewMethod', 'exceptionsByView'] as const

/** Label names a custom label may not take: those of the labelled families, the histogram's and the overflow series'. */
export const RESERVED_LABELS: readonly string[] = ['view', 'transport', 'method', 'status', 'le', 'otel_metric_overflow']

/** What a label function's value may look like on /metrics; anything else is `other`, as template names are. */
const LABEL_VALUE = /^[\w./@:+-]{0,100}$/
const OTHER_VALUE = 'other'

/**
 * The app's label functions (`http.labels`), called at each recording, as django calls
 * `label_metric` at each: with the request as it is then. A value is a string, number or boolean;
 * `undefined` or `null` is the empty value; one out of bounds, or a function that throws, is `other`
 * (the throw reported, rate-limited, never reaching the request).
 */
export class CustomLabels {
  readonly names: readonly string[]
  private readonly functions: readonly HttpLabelFunction[]

  constructor (labels: ReadonlyArray<readonly [string, HttpLabelFunction]>, private readonly faults: Faults) {
    this.names = labels.map(([name]) => name)
    this.functions = labels.map(([, fn]) => fn)
  }

  values (request: FastifyRequest): string[] {
    const values = new Array<string>(this.functions.length)
    for (let i = 0; i < values.length; i++) {
      let raw: unknown
      try {
        raw = this.functions[i]!(request)
      } catch (err) {
        this.faults.report(err)
        raw = OTHER_VALUE
      }
      values[i] = labelValue(raw)
    }
    return values
  }
}

function labelValue (raw: unknown): string {
  if (raw === undefined || raw === null) return ''
  const value = typeof raw === 'string' ? raw : typeof raw === 'number' || typeof raw === 'boolean' ? String(raw) : OTHER_VALUE
  return LABEL_VALUE.test(value) ? value : OTHER_VALUE
}
