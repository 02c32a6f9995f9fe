import type { RouteMetricsConfig, UpstreamMetrics, UpstreamMetricsPlugin } from './types'
import fastifyPlugin from './plugin'

export type {
  CacheOptions, DbConnectionInfo, DbModels, DbOptions, HttpLabelFunction, HttpOptions, MetricsAuthOptions, MigrationCounts, MigrationsOptions,
  MigrationTool, OtlpOptions, RouteMetricsConfig, UpstreamMetrics, UpstreamMetricsOptions, UpstreamMetricsPlugin, WorkerMetricsOptions
} from './types'
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
    metrics?: RouteMetricsConfig | undefined
  }
}

const plugin: UpstreamMetricsPlugin = fastifyPlugin
export const upstreamMetrics = plugin
export default plugin
