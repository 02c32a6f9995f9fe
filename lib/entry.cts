import api = require('./index')

// The @fastify/* convention: `require('upstream-metrics')` returns the plugin itself, with the named
// exports on it (`default` too, for transpiled ESM), and a namespace of the same name carries the types.
const upstreamMetrics: typeof api.default & typeof api = Object.assign(api.default, api)

declare namespace upstreamMetrics {
  export type CacheOptions = api.CacheOptions
  export type CacheOutcome = api.CacheOutcome
  export type DbConnectionInfo = api.DbConnectionInfo
  export type DbModels = api.DbModels
  export type DbOptions = api.DbOptions
  export type HttpLabelFunction = api.HttpLabelFunction
  export type HttpOptions = api.HttpOptions
  export type InstrumentCacheOptions = api.InstrumentCacheOptions
  export type MetricsAuthOptions = api.MetricsAuthOptions
  export type MigrationCounts = api.MigrationCounts
  export type MigrationsOptions = api.MigrationsOptions
  export type MigrationTool = api.MigrationTool
  export type OtlpOptions = api.OtlpOptions
  export type RouteMetricsConfig = api.RouteMetricsConfig
  export type UpstreamCacheMetrics = api.UpstreamCacheMetrics
  export type UpstreamMetrics = api.UpstreamMetrics
  export type UpstreamMetricsOptions = api.UpstreamMetricsOptions
  export type UpstreamMetricsPlugin = api.UpstreamMetricsPlugin
  export type WorkerMetricsOptions = api.WorkerMetricsOptions
}

export = upstreamMetrics
