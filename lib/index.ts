import type { RouteMetricsConfig, UpstreamMetrics } from './types'
import plugin from './plugin'

export type { CacheOptions, HttpOptions, MetricsAuthOptions, RouteMetricsConfig, UpstreamMetrics, UpstreamMetricsOptions, WorkerMetricsOptions } from './types'
export type { CacheOutcome, InstrumentCacheOptions, UpstreamCacheMetrics } from './cache'
export { instrumentCache, recordCacheGet } from './cache'
export { setupClusterPrimary } from './cluster'
export { CONTENT_TYPE } from './exposition'
export { DJANGO_BODY_BUCKETS, DJANGO_LATENCY_BUCKETS } from './names'

declare module 'fastify' {
  interface FastifyInstance {
    upstreamMetrics: UpstreamMetrics
  }
  interface FastifyContextConfig {
    metrics?: RouteMetricsConfig
  }
}

export const upstreamMetrics = plugin
export default plugin
