import type { Meter, MeterOptions, MeterProvider } from '@opentelemetry/api'
import type { ScopeMetrics } from '@opentelemetry/sdk-metrics'
import type { Warnings } from '../faults'
import { AttributeAdmission } from './attributes'
import { CallbackGuard } from './callbacks'
import { GuardedMeter, type MeterParts } from './meter'
import { InstrumentNames } from './names'

interface Options {
  /** `cardinalityLimit`: attribute sets per instrument, the overflow set included. */
  readonly limit: number
  /** `collectTimeoutMs`: how long one observable callback may take. */
  readonly timeoutMs: number
  readonly warnings: Warnings
  /** Sample names the plugin's own families write (store and aliases): never given to an instrument. */
  readonly pluginNames: () => ReadonlySet<string>
}

/**
 * Stands between every OpenTelemetry meter of this instance (the app's, the runtime's,
 * instrumentation-pg's) and the SDK, so that whatever is recorded, /metrics stays valid:
 * unique instrument names (names.ts), a bounded number of attribute sets per instrument with
 * reserved keys renamed (attributes.ts), bounded observable callbacks whose failures leave out
 * their own series only (callbacks.ts), each kind of instrument wired by a guarded meter (meter.ts).
 */
export class MeterGuard implements MeterProvider {
  private readonly meters = new Map<string, Meter>()
  private readonly parts: MeterParts

  constructor (private readonly provider: MeterProvider, options: Options) {
    const admission = new AttributeAdmission(options.limit, options.warnings)
    this.parts = {
      names: new InstrumentNames(options.pluginNames, options.warnings),
      admission,
      callbacks: new CallbackGuard(admission, options.timeoutMs)
    }
  }

  getMeter (name: string, version?: string, options?: MeterOptions): Meter {
    const id = `${name}\u0000${version ?? ''}`
    let meter = this.meters.get(id)
    if (meter === undefined) {
      meter = new GuardedMeter(name, this.provider.getMeter(name, version, options), this.parts)
      this.meters.set(id, meter)
    }
    return meter
  }

  /** The collection without the instruments whose callbacks failed, timed out or are still pending. */
  withoutFailed (scopeMetrics: ScopeMetrics[]): ScopeMetrics[] {
    return this.parts.callbacks.withoutFailed(scopeMetrics)
  }
}
