import { ValueType, type MetricOptions } from '@opentelemetry/api'
import type { Warnings } from '../faults'
import { metricName, sampleNames, type InstrumentKind } from '../translation'
import type { InstrumentState } from './instruments'

/**
 * The Prometheus names the instruments of every meter write (see translation.ts): an instrument
 * whose name another instrument or a plugin family already writes is refused, with one warning.
 */
export class InstrumentNames {
  private readonly byIdentity = new Map<string, InstrumentState>()
  /** Sample name → the instrument family writing it. */
  private readonly occupied = new Map<string, string>()

  /** `pluginNames`: the sample names the plugin's own families write (store and aliases). */
  constructor (private readonly pluginNames: () => ReadonlySet<string>, private readonly warnings: Warnings) {}

  /** The instrument's state (shared by instruments of the same identity), or undefined when its name is taken. */
  register (scope: string, name: string, options: MetricOptions | undefined, kind: InstrumentKind, sdkType: string): InstrumentState | undefined {
    const unit = options?.unit ?? ''
    const identity = [scope, name.toLowerCase(), unit, sdkType, options?.valueType ?? ValueType.DOUBLE].join('\u0000')
    const same = this.byIdentity.get(identity)
    if (same !== undefined) return same
    const family = metricName(name, unit, kind)
    const samples = sampleNames(family, kind === 'histogram')
    const plugin = this.pluginNames()
    const taken = samples.find((sample) => plugin.has(sample) || this.occupied.has(sample))
    if (taken !== undefined) {
      const owner = plugin.has(taken) ? 'a metric of the plugin' : `the instrument ${this.occupied.get(taken)!}`
      this.warnings.once(`the instrument "${name}" (meter "${scope}") would be exposed as ${family}, which ${owner} already writes (${taken}); it records nothing. Choose another name.`)
      return undefined
    }
    const state: InstrumentState = { scope, name, family, kind, admitted: new Map() }
    this.byIdentity.set(identity, state)
    for (const sample of samples) this.occupied.set(sample, `${name} (meter "${scope}")`)
    return state
  }
}
