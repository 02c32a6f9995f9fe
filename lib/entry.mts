import api from './index.js'

export default api.default
export const { upstreamMetrics, setupClusterPrimary, CONTENT_TYPE, DJANGO_BODY_BUCKETS, DJANGO_LATENCY_BUCKETS, instrumentCache, recordCacheGet } = api
export type { CacheOptions, CacheOutcome, InstrumentCacheOptions, HttpOptions, MetricsAuthOptions, RouteMetricsConfig, UpstreamCacheMetrics, UpstreamMetrics, UpstreamMetricsOptions, WorkerMetricsOptions } from './index.js'
