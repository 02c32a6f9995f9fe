import type { Attributes, BatchObservableCallback, BatchObservableResult, Observable, ObservableCallback, ObservableResult } from '@opentelemetry/api'
import type { ScopeMetrics } from '@opentelemetry/sdk-metrics'
import type { InstrumentKind } from '../translation'
import { OVERFLOW, type AttributeAdmission } from './attributes'
import { GuardedObservable, type InstrumentState } from './instruments'

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

/** One registered observable callback: not called again while `pending`; its instruments are left out while `failed`. */
interface CallbackState {
  readonly instruments: readonly InstrumentState[]
  pending: Promise<unknown> | undefined
  failed: boolean
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

/**
 * Observable callbacks as the guard calls them: bounded by `timeoutMs`, never called again while
 * their last call is pending, their observations admitted like any other; the series of a callback
 * that failed or timed out are left out of the collection.
 */
export class CallbackGuard {
  private readonly callbacks = new Map<ObservableCallback | BatchObservableCallback, CallbackState>()

  /** `timeoutMs`: `collectTimeoutMs`, how long one observable callback may take. */
  constructor (private readonly admission: AttributeAdmission, private readonly timeoutMs: number) {}

  wrap (callback: ObservableCallback, observable: GuardedObservable): ObservableCallback {
    const state: CallbackState = { instruments: [observable.state], pending: undefined, failed: false }
    const wrapper: ObservableCallback = (result: ObservableResult) => {
      const overflow = new Overflow()
      const observe = (value: number, attributes?: Attributes): void => {
        const admitted = this.admission.admit(observable.state, attributes)
        if (admitted === OVERFLOW) overflow.add(observable, observable.state.kind, value)
        else result.observe(value, admitted)
      }
      return this.invoke(state, () => callback({ observe }), () => overflow.flush((_, value) => result.observe(value, OVERFLOW)))
    }
    this.callbacks.set(wrapper, state)
    return wrapper
  }

  wrapBatch (callback: BatchObservableCallback, observables: GuardedObservable[]): BatchObservableCallback {
    const state: CallbackState = { instruments: observables.map((o) => o.state), pending: undefined, failed: false }
    const wrapper: BatchObservableCallback = (result: BatchObservableResult) => {
      const overflow = new Overflow()
      const observe = (observable: Observable, value: number, attributes?: Attributes): void => {
        if (!(observable instanceof GuardedObservable) || !observables.includes(observable)) return
        const admitted = this.admission.admit(observable.state, attributes)
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

  /** The collection without the instruments whose callbacks failed, timed out or are still pending. */
  withoutFailed (scopeMetrics: ScopeMetrics[]): ScopeMetrics[] {
    const failed = new Set<string>()
    for (const state of this.callbacks.values()) {
      if (state.failed) for (const i of state.instruments) failed.add(`${i.scope}\u0000${i.name}`)
    }
    if (failed.size === 0) return scopeMetrics
    return scopeMetrics.map((s) => ({ ...s, metrics: s.metrics.filter((m) => !failed.has(`${s.scope.name}\u0000${m.descriptor.name}`)) }))
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
    const timeoutMs = this.timeoutMs
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
