import type { Meter } from '@opentelemetry/api'
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus'
import { emptyResource } from '@opentelemetry/resources'
import { MeterProvider, type MetricReader, type ResourceMetrics, type ScopeMetrics } from '@opentelemetry/sdk-metrics'
import { Serializer } from './exposition'
import { STORE_SCOPE, StoreProducer } from './producer'
import type { Store } from './store'

export const RUNTIME_SCOPE = 'upstream-metrics/runtime'
export const APP_SCOPE = 'app'

function scopeOrder (name: string): number {
  return name === RUNTIME_SCOPE ? 0 : name === STORE_SCOPE.name ? 1 : 2
}

/**
 * This instance's OpenTelemetry backbone: its own MeterProvider (never the global
 * one) read by a PrometheusExporter that starts no server, with the store's cells
 * joining the SDK's own instruments through a metric producer.
 */
export class Telemetry {
  readonly provider: MeterProvider
  readonly exporter: PrometheusExporter
  readonly meter: Meter
  readonly runtimeMeter: Meter
  private readonly serializer = new Serializer()

  /** `readers`: more readers of the same instruments (the OTLP push, with its own view of the store). */
  constructor (store: Store, cardinalityLimit: number, readers: MetricReader[] = []) {
    this.exporter = new PrometheusExporter({
      preventServerStart: true,
      withoutScopeInfo: true,
      withoutTargetInfo: true,
      metricProducers: [new StoreProducer(store)]
    })
    this.provider = new MeterProvider({
      resource: emptyResource(),
      readers: [this.exporter, ...readers],
      views: [{ instrumentName: '*', aggregationCardinalityLimit: cardinalityLimit }]
    })
    this.meter = this.provider.getMeter(APP_SCOPE)
    this.runtimeMeter = this.provider.getMeter(RUNTIME_SCOPE)
  }

  async collect (): Promise<ScopeMetrics[]> {
    const { resourceMetrics, errors } = await this.exporter.collect()
    if (errors.length > 0) throw errors[0] instanceof Error ? errors[0] : new Error(String(errors[0]))
    return resourceMetrics.scopeMetrics
  }

  serialize (scopeMetrics: ScopeMetrics[]): string {
    const resourceMetrics: ResourceMetrics = { resource: emptyResource(), scopeMetrics }
    return this.serializer.serialize(resourceMetrics, scopeOrder)
  }

  async shutdown (): Promise<void> {
    await this.provider.shutdown()
  }
}
