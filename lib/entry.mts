import api from './index.js'

export default api.default
export const { upstreamMetrics, setupClusterPrimary, CONTENT_TYPE, DJANGO_BODY_BUCKETS, DJANGO_LATENCY_BUCKETS } = api
export type { MetricsAuthOptions, RouteMetricsConfig, UpstreamMetrics, UpstreamMetricsOptions, WorkerMetricsOptions } from './index.js'
