import {
  createNoopMeter,
  type Attributes, type BatchObservableCallback, type Counter, type Gauge, type Histogram, type Meter, type MetricOptions,
  type Observable, type ObservableCounter, type ObservableGauge, type ObservableUpDownCounter, type UpDownCounter
} from '@opentelemetry/api'
import type { InstrumentKind } from '../translation'
import type { AttributeAdmission } from './attributes'
import type { CallbackGuard } from './callbacks'
import { admittedAdds, admittedRecords, GuardedObservable } from './instruments'
import type { InstrumentNames } from './names'

const NOOP = createNoopMeter()

interface Batch { callback: BatchObservableCallback, observables: Observable[], wrapper: BatchObservableCallback }

/** What every meter of a guard shares. */
export interface MeterParts {
  readonly names: InstrumentNames
  readonly admission: AttributeAdmission
  readonly callbacks: CallbackGuard
}

/** One meter (scope) in front of the SDK's: a refused name gets a no-op instrument, the rest are guarded. */
export class GuardedMeter implements Meter {
  private readonly batches: Batch[] = []

  constructor (private readonly scope: string, private readonly sdk: Meter, private readonly parts: MeterParts) {}

  createCounter<A extends Attributes = Attributes> (name: string, options?: MetricOptions): Counter<A> {
    const state = this.parts.names.register(this.scope, name, options, 'counter', 'COUNTER')
    return state === undefined ? NOOP.createCounter(name, options) : admittedAdds(this.sdk.createCounter(name, options), state, this.parts.admission)
  }

  createUpDownCounter<A extends Attributes = Attributes> (name: string, options?: MetricOptions): UpDownCounter<A> {
    const state = this.parts.names.register(this.scope, name, options, 'updowncounter', 'UP_DOWN_COUNTER')
    return state === undefined ? NOOP.createUpDownCounter(name, options) : admittedAdds(this.sdk.createUpDownCounter(name, options), state, this.parts.admission)
  }

  createHistogram<A extends Attributes = Attributes> (name: string, options?: MetricOptions): Histogram<A> {
    const state = this.parts.names.register(this.scope, name, options, 'histogram', 'HISTOGRAM')
    return state === undefined ? NOOP.createHistogram(name, options) : admittedRecords(this.sdk.createHistogram(name, options), state, this.parts.admission)
  }

  createGauge<A extends Attributes = Attributes> (name: string, options?: MetricOptions): Gauge<A> {
    const state = this.parts.names.register(this.scope, name, options, 'gauge', 'GAUGE')
    return state === undefined ? NOOP.createGauge(name, options) : admittedRecords(this.sdk.createGauge(name, options), state, this.parts.admission)
  }

  createObservableGauge<A extends Attributes = Attributes> (name: string, options?: MetricOptions): ObservableGauge<A> {
    return this.observable('gauge', 'OBSERVABLE_GAUGE', name, options, () => this.sdk.createObservableGauge(name, options))
  }

  createObservableCounter<A extends Attributes = Attributes> (name: string, options?: MetricOptions): ObservableCounter<A> {
    return this.observable('counter', 'OBSERVABLE_COUNTER', name, options, () => this.sdk.createObservableCounter(name, options))
  }

  createObservableUpDownCounter<A extends Attributes = Attributes> (name: string, options?: MetricOptions): ObservableUpDownCounter<A> {
    return this.observable('updowncounter', 'OBSERVABLE_UP_DOWN_COUNTER', name, options, () => this.sdk.createObservableUpDownCounter(name, options))
  }

  addBatchObservableCallback (callback: BatchObservableCallback, observables: Observable[]): void {
    const guarded = observables.filter((o): o is GuardedObservable => o instanceof GuardedObservable)
    if (guarded.length === 0 || this.batchAt(callback, observables) !== -1) return
    const wrapper = this.parts.callbacks.wrapBatch(callback, guarded)
    this.batches.push({ callback, observables, wrapper })
    this.sdk.addBatchObservableCallback(wrapper, guarded.map((o) => o.inner))
  }

  removeBatchObservableCallback (callback: BatchObservableCallback, observables: Observable[]): void {
    const at = this.batchAt(callback, observables)
    if (at === -1) return
    const [batch] = this.batches.splice(at, 1)
    const guarded = batch!.observables.filter((o): o is GuardedObservable => o instanceof GuardedObservable)
    this.sdk.removeBatchObservableCallback(batch!.wrapper, guarded.map((o) => o.inner))
    this.parts.callbacks.forget(batch!.wrapper)
  }

  /** A refused name gets a no-op observable (a gauge: the API's no-op observables are all alike). */
  private observable (kind: InstrumentKind, sdkType: string, name: string, options: MetricOptions | undefined, create: () => Observable): Observable {
    const state = this.parts.names.register(this.scope, name, options, kind, sdkType)
    return state === undefined ? NOOP.createObservableGauge(name, options) : new GuardedObservable(create(), state, this.parts.callbacks)
  }

  private batchAt (callback: BatchObservableCallback, observables: readonly Observable[]): number {
    return this.batches.findIndex((b) => b.callback === callback && sameMembers(b.observables, observables))
  }
}

function sameMembers (a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x))
}
