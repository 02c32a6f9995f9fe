import type { Meter } from '@opentelemetry/api'
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus'
import { emptyResource } from '@opentelemetry/resources'
import { MeterProvider, type MetricReader, type ResourceMetrics, type ScopeMetrics } from '@opentelemetry/sdk-metrics'
import type { FastifyBaseLogger } from 'fastify'
import { MeterGuard } from './meter'
import { Serializer, type ExpositionFormat } from './exposition'
import { Faults, Warnings } from './faults'
import { exposedName } from './names'
import { STORE_SCOPE, StoreProducer } from './producer'
import type { Store } from './store'
import { sampleNames } from './translation'

export const RUNTIME_SCOPE = 'upstream-metrics/runtime'
export const APP_SCOPE = 'app'

/** Exposition order: runtime, the store's django families, instrumentations, then the app's own metrics. */
function scopeOrder (name: string): number {
  return name === RUNTIME_SCOPE ? 0 : name === STORE_SCOPE.name ? 1 : name === APP_SCOPE ? 3 : 2
}

export interface TelemetryOptions {
  /** How long an observable callback may take (`collectTimeoutMs`). */
  readonly collectTimeoutMs?: number
  /** Where warnings about the app's instruments and failed callbacks go; unset, nowhere. */
  readonly log?: FastifyBaseLogger
  /** `_created` series for the counters and histograms of every scope but the runtime's (`createdSeries`). */
  readonly createdSeries?: boolean
  /** More readers of the same instruments (the OTLP push, with its own view of the store). */
  readonly readers?: readonly MetricReader[]
}

const SILENT = { warn () {}, error () {} } as unknown as FastifyBaseLogger

/**
 * This instance's OpenTelemetry backbone: its own MeterProvider (never the global
 * one) read by a PrometheusExporter that starts no server, with the store's cells
 * joining the SDK's own instruments through a metric producer. Every meter handed out
 * (the app's, the runtime's, instrumentation-pg's) goes through one MeterGuard.
 */
export class Telemetry {
  readonly provider: MeterProvider
  readonly exporter: PrometheusExporter
  /** Hands out guarded meters: pass it where an instrumentation wants a MeterProvider. */
  readonly meters: MeterGuard
  readonly meter: Meter
  readonly runtimeMeter: Meter
  private readonly serializer: Serializer
  private readonly callbackFaults: Faults

  constructor (private readonly store: Store, cardinalityLimit: number, options: TelemetryOptions = {}) {
    const log = options.log ?? SILENT
    this.exporter = new PrometheusExporter({
      preventServerStart: true,
      withoutScopeInfo: true,
      withoutTargetInfo: true,
      metricProducers: [new StoreProducer(store)]
    })
    this.provider = new MeterProvider({
      resource: emptyResource(),
      readers: [this.exporter, ...options.readers ?? []],
      views: [{ instrumentName: '*', aggregationCardinalityLimit: cardinalityLimit }]
    })
    const warnings = new Warnings(log)
    this.meters = new MeterGuard(this.provider, {
      limit: cardinalityLimit,
      timeoutMs: options.collectTimeoutMs ?? 3000,
      warnings,
      pluginNames: () => this.pluginNames()
    })
    this.meter = this.meters.getMeter(APP_SCOPE)
    this.runtimeMeter = this.meters.getMeter(RUNTIME_SCOPE)
    this.serializer = new Serializer({
      untyped: () => this.untypedNames(),
      // The runtime's series mirror prometheus_client's process and platform collectors, which have none.
      created: (scope) => options.createdSeries === true && scope !== RUNTIME_SCOPE,
      onConflict: (family, scope) => warnings.once(`${family} of meter "${scope}" is left out of /metrics: an earlier family already writes one of its sample names`)
    })
    this.callbackFaults = new Faults(log, 60_000, 'an observable callback failed, timed out or is still pending; its series are left out of the scrape, the rest is served')
  }

  /** One collection; an observable callback that fails leaves out its own series only (and is logged once per minute). */
  async collect (): Promise<ScopeMetrics[]> {
    const { resourceMetrics, errors } = await this.exporter.collect()
    if (errors.length > 0) this.callbackFaults.report(errors[0])
    return this.meters.withoutFailed(resourceMetrics.scopeMetrics)
  }

  serialize (scopeMetrics: ScopeMetrics[], format: ExpositionFormat = 'text'): string {
    const resourceMetrics: ResourceMetrics = { resource: emptyResource(), scopeMetrics }
    return this.serializer.serialize(resourceMetrics, scopeOrder, format)
  }

  async shutdown (): Promise<void> {
    await this.provider.shutdown()
  }

  private pluginNamesCache: { families: number, names: Set<string> } | undefined

  /** Every sample name the store's families write, aliases included. */
  private pluginNames (): ReadonlySet<string> {
    const families = this.store.families
    if (this.pluginNamesCache?.families !== families.length) {
      const names = new Set<string>()
      for (const family of families) {
        for (const name of family.names) {
          for (const sample of sampleNames(exposedName(name, family.spec.type), family.spec.type === 'histogram')) names.add(sample)
        }
      }
      this.pluginNamesCache = { families: families.length, names }
    }
    return this.pluginNamesCache.names
  }

  private untypedNames (): ReadonlySet<string> {
    const names = new Set<string>()
    for (const family of this.store.families) if (family.spec.untyped === true) for (const name of family.names) names.add(name)
    return names
  }
}
