/**
 * What happens to a BullMQ job, told as Celery's task events (`task-sent`, `task-received`, …)
 * so that a listener can expose them the way a Celery exporter does. The collector calls these
 * once per transition it applies, in stream order; a listener never reads Redis itself.
 */

/** The labels Celery's task events carry, as far as BullMQ knows them. */
export interface JobLabels {
  /** The job's name (Celery's task name); undefined when its hash was gone before it was read. */
  readonly name: string | undefined
  /** The BullMQ queue (Celery's `queue_name`). */
  readonly queue: string
  /**
   * The worker holding the job: its BullMQ `Worker` option `name`, which BullMQ stores on the job
   * as `pb` (processedBy) when a worker takes it. Undefined before that, or for an unnamed worker.
   */
  readonly hostname: string | undefined
}

/** A worker connected to a followed queue, as its connection name tells. */
export interface WorkerHost {
  /** The worker's name (`<prefix>:<base64 queue>:w:<name>`); undefined for an unnamed worker. */
  readonly hostname: string | undefined
  readonly queue: string
  /** Jobs of this queue the worker holds now (active, tracked by the collector). */
  readonly active: number
}

export interface JobLifecycle {
  /** `added`: the job was published (Celery's `task-sent`). */
  sent: (job: JobLabels) => void
  /**
   * `active`: a worker took the job (Celery's `task-received` then `task-started`; BullMQ has no
   * gap between them). `waitSeconds`: since it became runnable (a deliberate delay excluded), when known.
   */
  started: (job: JobLabels, waitSeconds: number | undefined) => void
  /** `completed`; `runtimeSeconds` from `active` to completion, when both were seen. */
  succeeded: (job: JobLabels, runtimeSeconds: number | undefined) => void
  /** `failed` for good (no attempt left); `stacktrace`: the job's BullMQ field (JSON array, one stack per attempt), when still there. */
  failed: (job: JobLabels, stacktrace: string | undefined) => void
  /** A failed attempt that will run again (moved back to waiting or delayed by its backoff). */
  retried: (job: JobLabels) => void
  /** `removed` before finishing (Celery's `task-revoked`). */
  revoked: (job: JobLabels) => void
  /** `stalled`: the worker lost the job's lock and BullMQ handed it back to the queue. */
  rejected: (job: JobLabels) => void
  /** The workers connected at the last refresh (every call lists them all). */
  workers: (hosts: readonly WorkerHost[]) => void
}
