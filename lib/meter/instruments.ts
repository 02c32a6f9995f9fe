import type { Attributes, Counter, Gauge, Histogram, Observable, ObservableCallback, UpDownCounter } from '@opentelemetry/api'
import type { InstrumentKind } from '../translation'
import type { AttributeAdmission } from './attributes'
import type { CallbackGuard } from './callbacks'

/** One instrument as the guard knows it; instruments created twice with the same identity share it. */
export interface InstrumentState {
  readonly scope: string
  readonly name: string
  readonly family: string
  readonly kind: InstrumentKind
  /** The attribute sets admitted for the life of the process, by SDK identity, as recorded. */
  readonly admitted: Map<string, Attributes>
}

/** The synchronous instruments that add (counters, up-down counters), recording only admitted attribute sets. */
export function admittedAdds<T extends Counter | UpDownCounter> (inner: T, state: InstrumentState, admission: AttributeAdmission): T {
  return { add: (value, attributes, context) => inner.add(value, admission.admit(state, attributes), context) } satisfies Counter as T
}

/** The synchronous instruments that record (histograms, gauges), recording only admitted attribute sets. */
export function admittedRecords<T extends Histogram | Gauge> (inner: T, state: InstrumentState, admission: AttributeAdmission): T {
  return { record: (value, attributes, context) => inner.record(value, admission.admit(state, attributes), context) } satisfies Histogram as T
}

/** An observable instrument whose callbacks go through the callback guard (each one wrapped once). */
export class GuardedObservable implements Observable {
  private readonly wrapped = new Map<ObservableCallback, ObservableCallback>()

  constructor (readonly inner: Observable, readonly state: InstrumentState, private readonly callbacks: CallbackGuard) {}

  addCallback (callback: ObservableCallback): void {
    if (this.wrapped.has(callback)) return
    const wrapper = this.callbacks.wrap(callback, this)
    this.wrapped.set(callback, wrapper)
    this.inner.addCallback(wrapper)
  }

  removeCallback (callback: ObservableCallback): void {
    const wrapper = this.wrapped.get(callback)
    if (wrapper === undefined) return
    this.wrapped.delete(callback)
    this.inner.removeCallback(wrapper)
    this.callbacks.forget(wrapper)
  }
}
