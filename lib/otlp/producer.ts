import type { CollectionResult } from '@opentelemetry/sdk-metrics'
import { exposedName } from '../names'
import { StoreProducer, type Stream } from '../producer'
import type { Family } from '../store'

/**
 * The OTLP name of a store family's exposed name, chosen so that the OTLP → Prometheus
 * translation (github.com/prometheus/otlptranslator, in Prometheus's OTLP receiver and the
 * Collector's prometheus / prometheusremotewrite exporters) gives back the exposed name under
 * each common strategy. Units stay empty (no unit suffix); a counter is sent under its exposed
 * name, `_total` included, which the translation keeps. But a monotonic sum loses every `total`
 * token before its final `_total` is appended, so the counters whose name holds an inner `total`
 * (`django_http_requests_total_by_method_total`) go as cumulative non-monotonic sums: the name
 * survives, Prometheus types them gauge, and `rate()` still reads them as the counters they are.
 */
export function otlpStream (family: Family, name: string): Stream {
  if (family.spec.type !== 'counter') return { name, unit: '', monotonic: true }
  const exposed = exposedName(name, 'counter')
  return { name: exposed, unit: '', monotonic: !exposed.split('_').slice(0, -1).includes('total') }
}

export function otlpStreams (family: Family): readonly Stream[] {
  const otel = family.spec.otel
  if (otel !== undefined) return [{ name: otel.name, unit: otel.unit, monotonic: true }]
  return family.names.map((name) => otlpStream(family, name))
}

/** The store's families as the OTLP reader sees them. */
export class OtlpStoreProducer extends StoreProducer {
  private readonly cache = new WeakMap<Family, readonly Stream[]>()
  /** Runs before each collection (the worker's queue lengths are read then, as before a scrape). */
  beforeCollect: (() => Promise<void>) | undefined

  override async collect (): Promise<CollectionResult> {
    await this.beforeCollect?.()
    return await super.collect()
  }

  protected override streams (family: Family): readonly Stream[] {
    let streams = this.cache.get(family)
    if (streams === undefined) {
      streams = otlpStreams(family)
      this.cache.set(family, streams)
    }
    return streams
  }
}
