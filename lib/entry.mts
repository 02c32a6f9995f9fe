import upstreamMetrics from './entry.cjs'

export default upstreamMetrics
export const { setupClusterPrimary, CONTENT_TYPE, DJANGO_BODY_BUCKETS, DJANGO_LATENCY_BUCKETS, instrumentCache, recordCacheGet } = upstreamMetrics
export { upstreamMetrics }
export type {
  CacheOptions, CacheOutcome, DbConnectionInfo, DbModels, DbOptions, HttpLabelFunction, HttpOptions, InstrumentCacheOptions, MetricsAuthOptions, MigrationCounts,
  MigrationsOptions, MigrationTool, OtlpOptions, RouteMetricsConfig, UpstreamCacheMetrics, UpstreamMetrics, UpstreamMetricsOptions,
  UpstreamMetricsPlugin, WorkerMetricsOptions
} from './entry.cjs'
