/**
 * The metric table: every metric this plugin exposes, declared once.
 * Names are the exposed django-prometheus names minus the `_total` the Prometheus
 * exposition appends to counters (so `django_http_requests_total_by_method`
 * is exposed as `django_http_requests_total_by_method_total`, as in Django).
 */

export type MetricType = 'counter' | 'histogram' | 'gauge'
export type BucketKind = 'latency' | 'body'

export interface MetricSpec {
  /** Name before exposition: a counter gains `_total` unless it already ends with it. */
  readonly name: string
  readonly type: MetricType
  readonly help: string
  readonly labels: readonly string[]
  readonly buckets?: BucketKind
  /** Other exposed names carrying the same series (the seed guide's names). */
  readonly aliases?: readonly string[]
  /** How the cluster aggregator combines gauges of several workers. */
  readonly merge?: 'sum' | 'min' | 'max'
  /**
   * The OpenTelemetry identity of a semantic-convention family: `name` is then its Prometheus
   * translation (unit suffix added, dots turned into `_`), and label keys keep their dots. OTLP
   * pushes the family under this name and unit.
   */
  readonly otel?: { readonly name: string, readonly unit: string }
  /**
   * Written `# TYPE … untyped` on /metrics: a gauge whose upstream name ends in `_total` (or `_count`), which
   * `promtool check metrics` rejects as a gauge (docs/metrics.md, "Deviations").
   */
  readonly untyped?: true
}

function spec<K extends string> (table: Record<K, MetricSpec>): Record<K, MetricSpec> {
  return table
}

export const HTTP = spec({
  requestsBefore: { name: 'django_http_requests_before_middlewares_total', type: 'counter', help: 'Total count of requests before middlewares run.', labels: [] },
  responsesBefore: { name: 'django_http_responses_before_middlewares_total', type: 'counter', help: 'Total count of responses before middlewares run.', labels: [] },
  latencyIncluding: { name: 'django_http_requests_latency_including_middlewares_seconds', type: 'histogram', help: 'Histogram of requests processing time (including middleware processing time).', labels: [], buckets: 'latency' },
  unknownLatencyIncluding: { name: 'django_http_requests_unknown_latency_including_middlewares_total', type: 'counter', help: 'Count of requests for which the latency was unknown (when computing django_http_requests_latency_including_middlewares_seconds).', labels: [] },
  latencyByViewMethod: { name: 'django_http_requests_latency_seconds_by_view_method', type: 'histogram', help: 'Histogram of request processing time labelled by view.', labels: ['view', 'method'], buckets: 'latency' },
  unknownLatency: { name: 'django_http_requests_unknown_latency_total', type: 'counter', help: 'Count of requests for which the latency was unknown.', labels: [] },
  ajax: { name: 'django_http_ajax_requests_total', type: 'counter', help: 'Count of AJAX requests.', labels: [] },
  byMethod: { name: 'django_http_requests_total_by_method', type: 'counter', help: 'Count of requests by method.', labels: ['method'] },
  byTransport: { name: 'django_http_requests_total_by_transport', type: 'counter', help: 'Count of requests by transport.', labels: ['transport'] },
  byViewTransportMethod: { name: 'django_http_requests_total_by_view_transport_method', type: 'counter', help: 'Count of requests by view, transport, method.', labels: ['view', 'transport', 'method'] },
  requestBody: { name: 'django_http_requests_body_total_bytes', type: 'histogram', help: 'Histogram of requests by body size.', labels: [], buckets: 'body' },
  byTemplateName: { name: 'django_http_responses_total_by_templatename', type: 'counter', help: 'Count of responses by template name.', labels: ['templatename'] },
  byStatus: { name: 'django_http_responses_total_by_status', type: 'counter', help: 'Count of responses by status.', labels: ['status'] },
  byStatusViewMethod: { name: 'django_http_responses_total_by_status_view_method', type: 'counter', help: 'Count of responses by status, view, method.', labels: ['status', 'view', 'method'] },
  responseBody: { name: 'django_http_responses_body_total_bytes', type: 'histogram', help: 'Histogram of responses by body size.', labels: [], buckets: 'body' },
  byCharset: { name: 'django_http_responses_total_by_charset', type: 'counter', help: 'Count of responses by charset.', labels: ['charset'] },
  streaming: { name: 'django_http_responses_streaming_total', type: 'counter', help: 'Count of streaming responses.', labels: [] },
  exceptionsByType: { name: 'django_http_exceptions_total_by_type', type: 'counter', help: 'Count of exceptions by object type.', labels: ['type'] },
  exceptionsByView: { name: 'django_http_exceptions_total_by_view', type: 'counter', help: 'Count of exceptions by view.', labels: ['view'] }
})

/** OpenTelemetry's stable HTTP server semantic conventions, recorded when `http.semconvMetrics` is on. */
export const HTTP_SEMCONV = spec({
  requestDuration: {
    name: 'http_server_request_duration_seconds',
    type: 'histogram',
    help: 'Duration of HTTP server requests.',
    labels: ['http.request.method', 'http.route', 'http.response.status_code', 'url.scheme', 'error.type'],
    otel: { name: 'http.server.request.duration', unit: 's' }
  }
})

export const DB = spec({
  newConnections: { name: 'django_db_new_connections_total', type: 'counter', help: 'Counter of created connections by database and by vendor.', labels: ['alias', 'vendor'] },
  newConnectionErrors: { name: 'django_db_new_connection_errors_total', type: 'counter', help: 'Counter of connection failures by database and by vendor.', labels: ['alias', 'vendor'] },
  execute: { name: 'django_db_execute_total', type: 'counter', help: 'Counter of executed statements by database and by vendor, including bulk executions.', labels: ['alias', 'vendor'], aliases: ['django_db_query_total'] },
  executeMany: { name: 'django_db_execute_many_total', type: 'counter', help: 'Counter of executed statements in bulk operations by database and by vendor.', labels: ['alias', 'vendor'] },
  errors: { name: 'django_db_errors_total', type: 'counter', help: 'Counter of execution errors by database, vendor and exception type.', labels: ['alias', 'vendor', 'type'] },
  queryDuration: { name: 'django_db_query_duration_seconds', type: 'histogram', help: 'Histogram of query duration by database and vendor.', labels: ['alias', 'vendor'], buckets: 'latency' }
})

export const MODEL = spec({
  inserts: { name: 'django_model_inserts_total', type: 'counter', help: 'Number of insert operations by model.', labels: ['model'] },
  updates: { name: 'django_model_updates_total', type: 'counter', help: 'Number of update operations by model.', labels: ['model'] },
  deletes: { name: 'django_model_deletes_total', type: 'counter', help: 'Number of delete operations by model.', labels: ['model'] }
})

export const MIGRATIONS = spec({
  unapplied: { name: 'django_migrations_unapplied_total', type: 'gauge', help: 'Count of unapplied migrations by database connection', labels: ['connection'], merge: 'max', untyped: true },
  applied: { name: 'django_migrations_applied_total', type: 'gauge', help: 'Count of applied migrations by database connection', labels: ['connection'], merge: 'max', untyped: true }
})

export const CACHE = spec({
  get: { name: 'django_cache_get_total', type: 'counter', help: 'Total get requests on cache', labels: ['backend'] },
  hits: { name: 'django_cache_get_hits_total', type: 'counter', help: 'Total hits on cache', labels: ['backend'], aliases: ['django_cache_hits_total'] },
  misses: { name: 'django_cache_get_misses_total', type: 'counter', help: 'Total misses on cache', labels: ['backend'], aliases: ['django_cache_misses_total'] },
  fail: { name: 'django_cache_get_fail_total', type: 'counter', help: 'Total get request failures by cache', labels: ['backend'] }
})

/** Runtime series are not django-prometheus's; they are not namespaced, like prometheus_client's collectors. */
export const RUNTIME = spec({
  cpuSeconds: { name: 'process_cpu_seconds_total', type: 'counter', help: 'Total user and system CPU time spent in seconds.', labels: [] },
  residentMemory: { name: 'process_resident_memory_bytes', type: 'gauge', help: 'Resident memory size in bytes.', labels: [], merge: 'sum' },
  virtualMemory: { name: 'process_virtual_memory_bytes', type: 'gauge', help: 'Virtual memory size in bytes.', labels: [], merge: 'sum' },
  startTime: { name: 'process_start_time_seconds', type: 'gauge', help: 'Start time of the process since unix epoch in seconds.', labels: [], merge: 'min' },
  openFds: { name: 'process_open_fds', type: 'gauge', help: 'Number of open file descriptors.', labels: [], merge: 'sum' },
  maxFds: { name: 'process_max_fds', type: 'gauge', help: 'Maximum number of open file descriptors.', labels: [], merge: 'min' },
  eventLoopLagMin: { name: 'nodejs_eventloop_lag_min_seconds', type: 'gauge', help: 'Smallest event-loop delay over the last 30 to 60 s, in seconds.', labels: [], merge: 'min' },
  eventLoopLagMax: { name: 'nodejs_eventloop_lag_max_seconds', type: 'gauge', help: 'Largest event-loop delay over the last 30 to 60 s, in seconds.', labels: [], merge: 'max' },
  eventLoopLagMean: { name: 'nodejs_eventloop_lag_mean_seconds', type: 'gauge', help: 'Mean event-loop delay over the last 30 to 60 s, in seconds.', labels: [], merge: 'max' },
  eventLoopLagStddev: { name: 'nodejs_eventloop_lag_stddev_seconds', type: 'gauge', help: 'Standard deviation of the event-loop delay over the last 30 to 60 s, in seconds.', labels: [], merge: 'max' },
  eventLoopLagP50: { name: 'nodejs_eventloop_lag_p50_seconds', type: 'gauge', help: 'Median event-loop delay over the last 30 to 60 s, in seconds.', labels: [], merge: 'max' },
  eventLoopLagP90: { name: 'nodejs_eventloop_lag_p90_seconds', type: 'gauge', help: '90th percentile of the event-loop delay over the last 30 to 60 s, in seconds.', labels: [], merge: 'max' },
  eventLoopLagP99: { name: 'nodejs_eventloop_lag_p99_seconds', type: 'gauge', help: '99th percentile of the event-loop delay over the last 30 to 60 s, in seconds.', labels: [], merge: 'max' },
  eventLoopUtilization: { name: 'nodejs_eventloop_utilization_ratio', type: 'gauge', help: 'Share of time the event loop was busy over the last 30 to 60 s.', labels: [], merge: 'max' },
  heapUsed: { name: 'nodejs_heap_used_bytes', type: 'gauge', help: 'V8 heap in use, in bytes.', labels: [], merge: 'sum' },
  heapTotal: { name: 'nodejs_heap_total_bytes', type: 'gauge', help: 'V8 heap allocated, in bytes.', labels: [], merge: 'sum' },
  heapSpaceUsed: { name: 'nodejs_heap_space_used_bytes', type: 'gauge', help: 'V8 heap space in use, by space, in bytes.', labels: ['space'], merge: 'sum' },
  externalMemory: { name: 'nodejs_external_memory_bytes', type: 'gauge', help: 'Memory held by C++ objects bound to JavaScript, in bytes.', labels: [], merge: 'sum' },
  gcDuration: { name: 'nodejs_gc_duration_seconds', type: 'histogram', help: 'Garbage collection pauses by kind, in seconds.', labels: ['kind'] },
  info: { name: 'nodejs_version_info', type: 'gauge', help: 'Node.js version info.', labels: ['version', 'major', 'minor', 'patch'], merge: 'max' }
})

/**
 * celery-prometheus-exporter 1.1's series (HELP texts as in its source), plus the runtime and
 * queue-length series of its later releases. Never namespaced: the Celery exporter has no namespace.
 * Gauges merge with `max` under `cluster`: every process follows the same queues.
 */
export const CELERY = spec({
  tasks: { name: 'celery_tasks', type: 'gauge', help: 'Number of tasks per state', labels: ['state'], merge: 'max' },
  tasksByName: { name: 'celery_tasks_by_name', type: 'gauge', help: 'Number of tasks per state and name', labels: ['state', 'name'], merge: 'max' },
  workers: { name: 'celery_workers', type: 'gauge', help: 'Number of alive workers', labels: [], merge: 'max' },
  latency: { name: 'celery_task_latency', type: 'histogram', help: 'Seconds between a task is received and started.', labels: [] },
  runtime: { name: 'celery_task_runtime_seconds', type: 'histogram', help: 'Task runtime (seconds)', labels: ['name'], aliases: ['celery_tasks_runtime_seconds'] },
  queueLength: { name: 'celery_queue_length', type: 'gauge', help: 'Number of tasks in the queue.', labels: ['queue_name'], merge: 'max' }
})

/**
 * danihodovic/celery-exporter's series (names, types, labels, HELP texts as in its source,
 * src/exporter.py), which the celery-mixin dashboards and alerts query; `celery_queue_length` is
 * shared with `CELERY` (same name and label). Never namespaced, like `CELERY`.
 */
export const CELERY_EXPORTER = spec({
  sent: { name: 'celery_task_sent', type: 'counter', help: 'Sent when a task message is published.', labels: ['name', 'hostname', 'queue_name'] },
  received: { name: 'celery_task_received', type: 'counter', help: 'Sent when the worker receives a task.', labels: ['name', 'hostname', 'queue_name'] },
  started: { name: 'celery_task_started', type: 'counter', help: 'Sent just before the worker executes the task.', labels: ['name', 'hostname', 'queue_name'] },
  succeeded: { name: 'celery_task_succeeded', type: 'counter', help: 'Sent if the task executed successfully.', labels: ['name', 'hostname', 'queue_name'] },
  failed: { name: 'celery_task_failed', type: 'counter', help: 'Sent if the execution of the task failed.', labels: ['name', 'hostname', 'exception', 'queue_name'] },
  rejected: { name: 'celery_task_rejected', type: 'counter', help: 'The task was rejected by the worker, possibly to be re-queued or moved to a dead letter queue.', labels: ['name', 'hostname', 'queue_name'] },
  revoked: { name: 'celery_task_revoked', type: 'counter', help: 'Sent if the task has been revoked.', labels: ['name', 'hostname', 'queue_name'] },
  retried: { name: 'celery_task_retried', type: 'counter', help: 'Sent if the task failed, but will be retried in the future.', labels: ['name', 'hostname', 'queue_name'] },
  workerUp: { name: 'celery_worker_up', type: 'gauge', help: 'Indicates if a worker has recently sent a heartbeat.', labels: ['hostname'], merge: 'max' },
  workerTasksActive: { name: 'celery_worker_tasks_active', type: 'gauge', help: 'The number of tasks the worker is currently processing', labels: ['hostname'], merge: 'max' },
  runtime: { name: 'celery_task_runtime', type: 'histogram', help: 'Histogram of task runtime measurements.', labels: ['name', 'hostname', 'queue_name'] },
  queueWaitTime: { name: 'celery_task_queue_wait_time', type: 'histogram', help: 'Histogram of the time tasks spend waiting in the queue before being executed, excluding deliberate ETA/countdown delay.', labels: ['name', 'hostname', 'queue_name'] },
  activeWorkerCount: { name: 'celery_active_worker_count', type: 'gauge', help: 'The number of active workers in broker queue.', labels: ['queue_name'], merge: 'max', untyped: true }
})

/** The plugin's own series about OTLP push (option `otlp`); never namespaced, present only while pushing. */
export const OTLP = spec({
  exports: { name: 'upstream_metrics_otlp_exports_total', type: 'counter', help: 'OTLP exports by result (success, failure).', labels: ['result'] },
  droppedPoints: { name: 'upstream_metrics_otlp_dropped_points_total', type: 'counter', help: 'Data points in OTLP exports that failed (the next successful export carries the cumulative totals again).', labels: [] }
})

/** Exposition order follows django-prometheus's registration order. */
/** The worker collector's own series (command and `worker` option); never namespaced. */
export const WORKER = spec({
  eventsLost: { name: 'upstream_metrics_worker_events_lost_total', type: 'counter', help: 'BullMQ events trimmed from a queue\'s event stream before the worker metrics read them (jobs that finished among them are counted from BullMQ\'s completed and failed sets while it keeps them; current states are rebuilt).', labels: ['queue_name'] }
})

export const FAMILY_GROUPS = [RUNTIME, MODEL, MIGRATIONS, DB, HTTP, HTTP_SEMCONV, CACHE, CELERY, CELERY_EXPORTER, OTLP, WORKER] as const

/** prometheus_client's default `Histogram` buckets, which celery-prometheus-exporter 1.1 uses. */
export const CELERY_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]

/** celery-exporter's `DEFAULT_QUEUE_WAIT_BUCKETS` (+Inf implied). */
export const CELERY_QUEUE_WAIT_BUCKETS: readonly number[] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]

/** The bucket advice of `http.server.request.duration` in the semantic conventions: prometheus_client's defaults again. */
export const SEMCONV_HTTP_DURATION_BUCKETS: readonly number[] = CELERY_BUCKETS

/** `PROMETHEUS_LATENCY_BUCKETS` default. */
export const DJANGO_LATENCY_BUCKETS: readonly number[] = [0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 25, 50, 75]

/** `PowersOf(2, 30)`: 0 then 2^0 … 2^29; not configurable in django-prometheus either. */
export const DJANGO_BODY_BUCKETS: readonly number[] = [0, ...Array.from({ length: 30 }, (_, i) => 2 ** i)]

export const STANDARD_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'TRACE', 'OPTIONS', 'CONNECT', 'PATCH'] as const
export const INVALID_METHOD = '<invalid method>'
export const UNNAMED_VIEW = '<unnamed view>'
/** The semantic conventions' known `http.request.method` values (RFC 9110, PATCH, QUERY); others are `_OTHER`. */
export const SEMCONV_KNOWN_METHODS = [...STANDARD_METHODS, 'QUERY'] as const
export const SEMCONV_OTHER_METHOD = '_OTHER'
/** `templatename` of a template response without a name: Python's `str(None)`. */
export const NO_TEMPLATE_NAME = 'None'
export const SCRAPE_VIEW = 'prometheus-django-metrics'
export const OVERFLOW_ATTRIBUTE = 'otel_metric_overflow'

/** Exposed sample family name, as Prometheus sees it. */
export function exposedName (name: string, type: MetricType): string {
  return type === 'counter' && !name.endsWith('_total') ? `${name}_total` : name
}
