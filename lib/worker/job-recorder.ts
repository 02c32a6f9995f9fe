import { CELERY_BUCKETS } from '../names'
import { observe, type Cell, type HistogramCell } from '../store'
import type { CeleryState, CurrentState, FinishedState } from './celery-states'
import type { JobLabels, JobLifecycle } from './lifecycle'
import type { Job } from './queues'
import type { TaskNames } from './task-names'

/**
 * The one place a job's transitions are counted: `celery_tasks` and its per-name twin, the latency
 * and runtime histograms, and the lifecycle listener. Events applied as they come and finishes
 * recovered after a gap in the event stream are counted here alike. `JobLabels.name` is the job's label.
 */
export class JobRecorder {
  constructor (
    private readonly tasks: Record<CeleryState, Cell>,
    private readonly names: TaskNames,
    private readonly latency: HistogramCell,
    private readonly lifecycle: JobLifecycle
  ) {}

  /** The `name` label of a job name from Redis (see TaskNames.label). */
  label (name: string): string {
    return this.names.label(name)
  }

  sent (job: JobLabels): void {
    this.lifecycle.sent(job)
  }

  rejected (job: JobLabels): void {
    this.lifecycle.rejected(job)
  }

  retried (job: JobLabels): void {
    this.lifecycle.retried(job)
  }

  /** A worker took the job; `latency` (s) when it is a first start and its wait is known. */
  started (job: JobLabels, latency: number | undefined): void {
    if (latency !== undefined) observe(this.latency, CELERY_BUCKETS, latency)
    this.lifecycle.started(job, latency)
  }

  /** `runtime` (s): a success's, when known; `stacktrace`: a failure's. The job no longer holds a current state. */
  finished (job: JobLabels, state: FinishedState, runtime: number | undefined, stacktrace: string | undefined): void {
    if (runtime !== undefined && job.name !== undefined) observe(this.names.runtimeCell(job.name), CELERY_BUCKETS, runtime)
    if (state === 'SUCCESS') this.lifecycle.succeeded(job, runtime)
    else if (state === 'FAILURE') this.lifecycle.failed(job, stacktrace)
    else this.lifecycle.revoked(job)
    this.tasks[state].value++
    if (job.name !== undefined) this.names.states(job.name)[state].value++
  }

  /** Moves a tracked job (counted in its queue's `current`) to `state`; undefined: it no longer counts. */
  setState (queue: { current: number }, job: Job, state: CurrentState | undefined): void {
    if (job.state === state) return
    if (job.state !== undefined) {
      queue.current--
      this.tasks[job.state].value--
      if (job.label !== undefined) this.names.states(job.label)[job.state].value--
    }
    job.state = state
    if (state !== undefined) {
      queue.current++
      this.tasks[state].value++
      if (job.label !== undefined) this.names.states(job.label)[state].value++
    }
  }
}
