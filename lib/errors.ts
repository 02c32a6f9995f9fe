import createError from '@fastify/error'

export const InvalidOptionError = createError<[string, string, string]>(
  'UPSTREAM_METRICS_INVALID_OPTION',
  'upstream-metrics: option "%s" %s; got %s',
  500,
  TypeError
)

export const AlreadyRegisteredError = createError(
  'UPSTREAM_METRICS_ALREADY_REGISTERED',
  'upstream-metrics is already registered in this Fastify app; register it once: wherever it is registered, it measures every route of the app',
  500
)

export const ClusterTimeoutError = createError<[number]>(
  'UPSTREAM_METRICS_CLUSTER_TIMEOUT',
  'upstream-metrics: the cluster primary did not answer within %d ms; call setupClusterPrimary() in the primary process',
  500
)

export const ClusterInstanceError = createError(
  'UPSTREAM_METRICS_CLUSTER_INSTANCE',
  'upstream-metrics: only one instance per worker process can use cluster: true (the primary could not tell their metrics apart)',
  500
)

export const MissingPeerError = createError<[string, string, string]>(
  'UPSTREAM_METRICS_MISSING_PEER',
  'upstream-metrics: %s needs the package "%s", which is not installed; install it next to upstream-metrics (npm install %s): it is an optional peer dependency, needed by that feature only',
  500
)

export const PeerVersionError = createError<[string, string, string]>(
  'UPSTREAM_METRICS_PEER_VERSION',
  'upstream-metrics: %s needs %s; the installed version is %s',
  500
)
