import {
  createNoopMeter, ValueType,
  type Attributes, type BatchObservableCallback, type BatchObservableResult, type Counter, type Gauge,
  type Histogram, type Meter, type MeterOptions, type MeterProvider, type MetricOptions, type Observable, type ObservableCallback,
  type ObservableResult, type UpDownCounter
} from '@opentelemetry/api'
import type { ScopeMetrics } from '@opentelemetry/sdk-metrics'
import type { Warnings } from './faults'
import { isReservedKey, labelName, labelValue, metricName, sampleNames, type InstrumentKind } from './translation'

/** The SDK's own overflow attribute set: `otel_metric_overflow="true"` on /metrics, the spec's key over OTLP. */
export const OVERFLOW: Attributes = Object.freeze({ 'otel.metric.overflow': true })
const EMPTY: Attributes = Object.freeze({})
const NOOP = createNoopMeter()

/** An attribute set's identity: keys sorted, each key and string value length-prefixed (no two sets share one). */
function attributesKey (attributes: Attributes): string {
  const keys = Object.keys(attributes)
  if (keys.length === 0) return ''
  if (keys.length > 1) keys.sort()
  let key = ''
  for (const k of keys) {
    const v = attributes[k]
    const value = typeof v === 'string' ? v : JSON.stringify(v) ?? ''
    key += `${k.length}:${k}${typeof v === 'string' ? 's' : 'j'}${value.length}:${value}`
  }
  return key
}

export class CallbackPendingError extends Error {
  constructor () {
    super('the previous call of this observable callback has not settled yet; it is not called again until it does')
  }
}

export class CallbackTimeoutError extends Error {
  constructor (ms: number) {
    super(`the observable callback did not settle within collectTimeoutMs (${ms} ms)`)
  }
}

/** One instrument as the guard knows it; instruments created twice with the same identity share it. */
interface InstrumentState {
  readonly scope: string
  readonly name: string
  readonly family: string
  readonly kind: InstrumentKind
  /** The attribute sets admitted for the life of the process, by SDK identity, as recorded. */
  readonly admitted: Map<string, Attributes>
}

/** One registered observable callback: not called again while `pending`; its instruments are left out while `failed`. */
interface CallbackState {
  readonly instruments: readonly InstrumentState[]
  pending: Promise<unknown> | undefined
  failed: boolean
}

interface Options {
  /** `cardinalityLimit`: attribute sets per instrument, the overflow set included. */
  readonly limit: number
  /** `collectTimeoutMs`: how long one observable callback may take. */
  readonly timeoutMs: number
  readonly warnings: Warnings
  /** Sample names the plugin's own families write (store and aliases): never given to an instrument. */
  readonly pluginNames: () => ReadonlySet<string>
}

/** Observations of one callback call: overflowing sets add up (sums) or keep the last value (gauges). */
class Overflow {
  private readonly values = new Map<object, number>()

  add (target: object, kind: InstrumentKind, value: number): void {
    const before = this.values.get(target)
    this.values.set(target, before === undefined || kind === 'gauge' ? value : before + value)
  }

  flush (observe: (target: object, value: number) => void): void {
    for (const [target, value] of this.values) observe(target, value)
  }
}

class GuardedObservable implements Observable {
  private readonly wrapped = new Map<ObservableCallback, ObservableCallback>()

  constructor (readonly inner: Observable, readonly state: InstrumentState, private readonly guard: MeterGuard) {}

  addCallback (callback: ObservableCallback): void {
    if (this.wrapped.has(callback)) return
    const wrapper = this.guard.wrapCallback(callback, this)
    this.wrapped.set(callback, wrapper)
    this.inner.addCallback(wrapper)
  }

  removeCallback (callback: ObservableCallback): void {
    const wrapper = this.wrapped.get(callback)
    if (wrapper === undefined) return
    this.wrapped.delete(callback)
    this.inner.removeCallback(wrapper)
    this.guard.forget(wrapper)
  }
}

/**
 * Stands between every OpenTelemetry meter of this instance (the app's, the runtime's,
 * instrumentation-pg's) and the SDK, so that whatever is recorded, /metrics stays valid:
 *
 * - an instrument whose Prometheus name (see translation.ts) another instrument or a plugin
 *   family already writes is refused (a no-op instrument and one warning);
 * - each instrument admits at most `limit - 1` attribute sets for the life of the process; every
 *   further set is recorded as the overflow set, so series and memory stay bounded across scrapes
 *   (the SDK applies its limit per collection only, and its cumulative storage keeps every set);
 * - attribute keys Prometheus reserves (`le`, `quantile`, `__…__`) are renamed (`key_le`), with one
 *   warning; keys that become the same label name are told about once (the serializer joins their values);
 * - an observable callback is bounded by `timeoutMs`, never called again while its last call is
 *   pending, and the series of a callback that failed or timed out are left out of the collection.
 */
export class MeterGuard implements MeterProvider {
  private readonly meters = new Map<string, Meter>()
  private readonly byIdentity = new Map<string, InstrumentState>()
  /** Sample name → the instrument family writing it. */
  private readonly occupied = new Map<string, string>()
  private readonly callbacks = new Map<ObservableCallback | BatchObservableCallback, CallbackState>()

  constructor (private readonly provider: MeterProvider, private readonly options: Options) {}

  getMeter (name: string, version?: string, options?: MeterOptions): Meter {
    const id = `${name}\u0000${version ?? ''}`
    let meter = this.meters.get(id)
    if (meter === undefined) {
      meter = this.guardedMeter(name, this.provider.getMeter(name, version, options))
      this.meters.set(id, meter)
    }
    return meter
  }

  /** The collection without the instruments whose callbacks failed, timed out or are still pending. */
  withoutFailed (scopeMetrics: ScopeMetrics[]): ScopeMetrics[] {
    const failed = new Set<string>()
    for (const state of this.callbacks.values()) {
      if (state.failed) for (const i of state.instruments) failed.add(`${i.scope}\u0000${i.name}`)
    }
    if (failed.size === 0) return scopeMetrics
    return scopeMetrics.map((s) => ({ ...s, metrics: s.metrics.filter((m) => !failed.has(`${s.scope.name}\u0000${m.descriptor.name}`)) }))
  }

  private guardedMeter (scope: string, sdk: Meter): Meter {
    const guard = this
    const batches: Array<{ callback: BatchObservableCallback, observables: Observable[], wrapper: BatchObservableCallback }> = []
    const sync = <T>(kind: InstrumentKind, sdkType: string, name: string, options: MetricOptions | undefined, create: () => T, noop: () => T, wrap: (inner: T, state: InstrumentState) => T): T => {
      const state = guard.register(scope, name, options, kind, sdkType)
      return state === undefined ? noop() : wrap(create(), state)
    }
    const observable = (kind: InstrumentKind, sdkType: string, name: string, options: MetricOptions | undefined, create: () => Observable): Observable => {
      const state = guard.register(scope, name, options, kind, sdkType)
      return state === undefined ? NOOP.createObservableGauge(name, options) : new GuardedObservable(create(), state, guard)
    }
    return {
      createCounter: (name, options) => sync<Counter>('counter', 'COUNTER', name, options, () => sdk.createCounter(name, options), () => NOOP.createCounter(name, options),
        (inner, state) => ({ add: (value, attributes, context) => inner.add(value, guard.admit(state, attributes), context) })),
      createUpDownCounter: (name, options) => sync<UpDownCounter>('updowncounter', 'UP_DOWN_COUNTER', name, options, () => sdk.createUpDownCounter(name, options), () => NOOP.createUpDownCounter(name, options),
        (inner, state) => ({ add: (value, attributes, context) => inner.add(value, guard.admit(state, attributes), context) })),
      createHistogram: (name, options) => sync<Histogram>('histogram', 'HISTOGRAM', name, options, () => sdk.createHistogram(name, options), () => NOOP.createHistogram(name, options),
        (inner, state) => ({ record: (value, attributes, context) => inner.record(value, guard.admit(state, attributes), context) })),
      createGauge: (name, options) => sync<Gauge>('gauge', 'GAUGE', name, options, () => sdk.createGauge(name, options), () => NOOP.createGauge(name, options),
        (inner, state) => ({ record: (value, attributes, context) => inner.record(value, guard.admit(state, attributes), context) })),
      createObservableGauge: (name, options) => observable('gauge', 'OBSERVABLE_GAUGE', name, options, () => sdk.createObservableGauge(name, options)),
      createObservableCounter: (name, options) => observable('counter', 'OBSERVABLE_COUNTER', name, options, () => sdk.createObservableCounter(name, options)),
      createObservableUpDownCounter: (name, options) => observable('updowncounter', 'OBSERVABLE_UP_DOWN_COUNTER', name, options, () => sdk.createObservableUpDownCounter(name, options)),
      addBatchObservableCallback (callback, observables) {
        const guarded = observables.filter((o): o is GuardedObservable => o instanceof GuardedObservable)
        if (guarded.length === 0 || batches.some((b) => b.callback === callback && sameMembers(b.observables, observables))) return
        const wrapper = guard.wrapBatchCallback(callback, guarded)
        batches.push({ callback, observables, wrapper })
        sdk.addBatchObservableCallback(wrapper, guarded.map((o) => o.inner))
      },
      removeBatchObservableCallback (callback, observables) {
        const at = batches.findIndex((b) => b.callback === callback && sameMembers(b.observables, observables))
        if (at === -1) return
        const [batch] = batches.splice(at, 1)
        const guarded = batch!.observables.filter((o): o is GuardedObservable => o instanceof GuardedObservable)
        sdk.removeBatchObservableCallback(batch!.wrapper, guarded.map((o) => o.inner))
        guard.forget(batch!.wrapper)
      }
    }
  }

  private register (scope: string, name: string, options: MetricOptions | undefined, kind: InstrumentKind, sdkType: string): InstrumentState | undefined {
    const unit = options?.unit ?? ''
    const identity = [scope, name.toLowerCase(), unit, sdkType, options?.valueType ?? ValueType.DOUBLE].join('\u0000')
    const same = this.byIdentity.get(identity)
    if (same !== undefined) return same
    const family = metricName(name, unit, kind)
    const samples = sampleNames(family, kind === 'histogram')
    const plugin = this.options.pluginNames()
    const taken = samples.find((sample) => plugin.has(sample) || this.occupied.has(sample))
    if (taken !== undefined) {
      const owner = plugin.has(taken) ? 'a metric of the plugin' : `the instrument ${this.occupied.get(taken)!}`
      this.options.warnings.once(`the instrument "${name}" (meter "${scope}") would be exposed as ${family}, which ${owner} already writes (${taken}); it records nothing. Choose another name.`)
      return undefined
    }
    const state: InstrumentState = { scope, name, family, kind, admitted: new Map() }
    this.byIdentity.set(identity, state)
    for (const sample of samples) this.occupied.set(sample, `${name} (meter "${scope}")`)
    return state
  }

  /** The attribute set to record: the admitted one (reserved keys renamed), or the overflow set past the limit. */
  admit (state: InstrumentState, attributes: Attributes | undefined): Attributes {
    const given = attributes ?? EMPTY
    const key = attributesKey(given)
    const found = state.admitted.get(key)
    if (found !== undefined) return found
    if (state.admitted.size >= this.options.limit - 1) return OVERFLOW
    const prepared = this.prepare(state, given)
    state.admitted.set(key, prepared)
    return prepared
  }

  /** A copy (the app may mutate its object later) with reserved keys renamed, warning once about what changes. */
  private prepare (state: InstrumentState, attributes: Attributes): Attributes {
    const prepared: Attributes = {}
    const byLabel = new Map<string, string[]>()
    for (const key of Object.keys(attributes).sort()) {
      let recorded = key
      if (isReservedKey(key)) {
        recorded = labelName(key)
        this.options.warnings.once(`attribute "${key}" of ${state.family} is a name Prometheus reserves; it is recorded as "${recorded}"`)
      }
      const value = attributes[key]
      prepared[recorded] = recorded in prepared ? `${labelValue(prepared[recorded])};${labelValue(value)}` : value
      const label = labelName(recorded)
      const keys = byLabel.get(label)
      if (keys === undefined) byLabel.set(label, [recorded])
      else if (!keys.includes(recorded)) keys.push(recorded)
    }
    for (const [label, keys] of byLabel) {
      if (keys.length > 1) this.options.warnings.once(`attributes ${keys.map((k) => `"${k}"`).join(', ')} of ${state.family} all become the label "${label}"; its value joins theirs with ";"`)
    }
    return prepared
  }

  wrapCallback (callback: ObservableCallback, observable: GuardedObservable): ObservableCallback {
    const state: CallbackState = { instruments: [observable.state], pending: undefined, failed: false }
    const wrapper: ObservableCallback = (result: ObservableResult) => {
      const overflow = new Overflow()
      const observe = (value: number, attributes?: Attributes): void => {
        const admitted = this.admit(observable.state, attributes)
        if (admitted === OVERFLOW) overflow.add(observable, observable.state.kind, value)
        else result.observe(value, admitted)
      }
      return this.invoke(state, () => callback({ observe }), () => overflow.flush((_, value) => result.observe(value, OVERFLOW)))
    }
    this.callbacks.set(wrapper, state)
    return wrapper
  }

  private wrapBatchCallback (callback: BatchObservableCallback, observables: GuardedObservable[]): BatchObservableCallback {
    const state: CallbackState = { instruments: observables.map((o) => o.state), pending: undefined, failed: false }
    const wrapper: BatchObservableCallback = (result: BatchObservableResult) => {
      const overflow = new Overflow()
      const observe = (observable: Observable, value: number, attributes?: Attributes): void => {
        if (!(observable instanceof GuardedObservable) || !observables.includes(observable)) return
        const admitted = this.admit(observable.state, attributes)
        if (admitted === OVERFLOW) overflow.add(observable, observable.state.kind, value)
        else result.observe(observable.inner, value, admitted)
      }
      return this.invoke(state, () => callback({ observe }), () => overflow.flush((o, value) => result.observe((o as GuardedObservable).inner, value, OVERFLOW)))
    }
    this.callbacks.set(wrapper, state)
    return wrapper
  }

  forget (wrapper: ObservableCallback | BatchObservableCallback): void {
    this.callbacks.delete(wrapper)
  }

  /** Calls an app callback unless its last call is pending; an async one is bounded by `timeoutMs`. */
  private invoke (state: CallbackState, call: () => void | Promise<void>, flush: () => void): void | Promise<void> {
    if (state.pending !== undefined) {
      state.failed = true
      throw new CallbackPendingError()
    }
    let returned: void | Promise<void>
    try {
      returned = call()
    } catch (err) {
      state.failed = true
      throw err
    }
    if (!isThenable(returned)) {
      flush()
      state.failed = false
      return
    }
    const pending = Promise.resolve(returned)
    state.pending = pending
    const settled = (): void => { if (state.pending === pending) state.pending = undefined }
    pending.then(settled, settled)
    const timeoutMs = this.options.timeoutMs
    return new Promise<void>((resolve, reject) => {
      let late = false
      const timer = setTimeout(() => {
        late = true
        state.failed = true
        reject(new CallbackTimeoutError(timeoutMs))
      }, timeoutMs)
      pending.then(() => {
        clearTimeout(timer)
        if (late) return
        flush()
        state.failed = false
        resolve()
      }, (err: unknown) => {
        clearTimeout(timer)
        if (late) return
        state.failed = true
        reject(err)
      })
    })
  }
}

function isThenable (value: unknown): value is Promise<void> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function'
}

function sameMembers (a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x))
}
