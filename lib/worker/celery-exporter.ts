import { CELERY_BUCKETS, CELERY_EXPORTER, CELERY_QUEUE_WAIT_BUCKETS } from '../names'
import { observe, type Cell, type Family, type HistogramCell, type Store } from '../store'
import type { JobLabels, JobLifecycle, WorkerHost } from './lifecycle'

/** celery-exporter's hostname when the host is not known (its `--generic-hostname-*` options' value). */
export const GENERIC_HOSTNAME = 'generic'
/** celery-exporter's `exception` when the failure names no class. */
export const UNKNOWN_EXCEPTION = 'UnknownException'
/** A label value that is too long or not printable, as the HTTP labels do. */
export const OTHER_LABEL = 'other'
/** How long a worker gone from Redis is shown down before its series go (celery-exporter's purge default). */
export const PURGE_OFFLINE_WORKER_MS = 10 * 60_000

const PRINTABLE = /^[^\p{C}]{1,200}$/u
const CLASS_NAME = /^([A-Za-z_$][\w$]{0,99})(?::|$)/

/** A job name or worker name as a label: itself when short and printable, else `other`. */
export function boundedLabel (value: string): string {
  return PRINTABLE.test(value) ? value : OTHER_LABEL
}

/** Celery's `nodesplit`: `worker@host` is on `host`; a BullMQ worker name without `@` is the host. */
export function hostLabel (workerName: string | undefined): string {
  if (workerName === undefined || workerName === '') return GENERIC_HOSTNAME
  const at = workerName.indexOf('@')
  return boundedLabel(at === -1 ? workerName : workerName.slice(at + 1))
}

/**
 * The class the last stack starts with (`TypeError: …` → `TypeError`), as celery-exporter reads
 * the class off Celery's exception text. `stacktrace`: BullMQ's field, a JSON array, one stack per attempt.
 */
export function exceptionLabel (stacktrace: string | undefined): string {
  let stack: unknown = stacktrace
  try {
    const attempts: unknown = JSON.parse(stacktrace ?? '')
    if (Array.isArray(attempts)) stack = attempts.at(-1)
  } catch {}
  const match = typeof stack === 'string' ? CLASS_NAME.exec(stack) : null
  return match === null ? UNKNOWN_EXCEPTION : match[1]!
}

/** The series of one (queue, hostname, name), looked up once. */
interface TaskCells {
  readonly labels: readonly [string, string, string]
  readonly received: Cell
  readonly started: Cell
  readonly succeeded: Cell
  readonly failed: Map<string, Cell>
  readonly rejected: Cell
  readonly revoked: Cell
  readonly retried: Cell
  /** Created by the first observation, as celery-exporter's `labels(…).observe()`. */
  runtime: HistogramCell | undefined
  wait: HistogramCell | undefined
}

/**
 * danihodovic/celery-exporter's families fed by the collector's job lifecycle. As that exporter:
 * every event but `task-sent` also shows the task's other counters at 0 (so a rate over them has
 * data), `task-sent` is the only counter a producer's host appears on, runtime is observed on
 * success, queue wait on start, and a worker that disconnects is shown down, then forgotten.
 */
export class CeleryExporterFamilies implements JobLifecycle {
  private readonly sentFamily: Family
  private readonly receivedFamily: Family
  private readonly startedFamily: Family
  private readonly succeededFamily: Family
  private readonly failedFamily: Family
  private readonly rejectedFamily: Family
  private readonly revokedFamily: Family
  private readonly retriedFamily: Family
  private readonly runtimeFamily: Family<HistogramCell>
  private readonly waitFamily: Family<HistogramCell>
  private readonly workerUp: Family
  private readonly workerActive: Family
  private readonly activeWorkers: Family
  private readonly tasks = new Map<string, TaskCells>()
  private readonly sentCells = new Map<string, Cell>()
  /** Hostnames shown, and since when each is gone (NaN while connected). */
  private readonly hosts = new Map<string, number>()
  private readonly queues = new Set<string>()
  private readonly limit: number

  constructor (store: Store, private readonly now: () => number = Date.now) {
    const asDeclared = { namespaced: false }
    const c = CELERY_EXPORTER
    this.sentFamily = store.counter(c.sent, asDeclared)
    this.receivedFamily = store.counter(c.received, asDeclared)
    this.startedFamily = store.counter(c.started, asDeclared)
    this.succeededFamily = store.counter(c.succeeded, asDeclared)
    this.failedFamily = store.counter(c.failed, asDeclared)
    this.rejectedFamily = store.counter(c.rejected, asDeclared)
    this.revokedFamily = store.counter(c.revoked, asDeclared)
    this.retriedFamily = store.counter(c.retried, asDeclared)
    this.runtimeFamily = store.histogram(c.runtime, CELERY_BUCKETS, asDeclared)
    this.waitFamily = store.histogram(c.queueWaitTime, CELERY_QUEUE_WAIT_BUCKETS, asDeclared)
    this.workerUp = store.gauge(c.workerUp, asDeclared)
    this.workerActive = store.gauge(c.workerTasksActive, asDeclared)
    this.activeWorkers = store.gauge(c.activeWorkerCount, asDeclared)
    // Past the families' cardinality limit the cells are the overflow series: nothing more to remember.
    this.limit = this.sentFamily.limit
  }

  sent (job: JobLabels): void {
    const name = job.name === undefined ? OTHER_LABEL : boundedLabel(job.name)
    const key = `${job.queue}\u0000${name}`
    let cell = this.sentCells.get(key)
    if (cell === undefined) {
      cell = this.sentFamily.cell(name, GENERIC_HOSTNAME, job.queue)
      if (this.sentCells.size < this.limit) this.sentCells.set(key, cell)
    }
    cell.value++
  }

  started (job: JobLabels, waitSeconds: number | undefined): void {
    const cells = this.cells(job)
    cells.received.value++
    cells.started.value++
    if (waitSeconds === undefined || !Number.isFinite(waitSeconds)) return
    cells.wait ??= this.waitFamily.cell(...cells.labels)
    observe(cells.wait, CELERY_QUEUE_WAIT_BUCKETS, Math.max(0, waitSeconds))
  }

  succeeded (job: JobLabels, runtimeSeconds: number | undefined): void {
    const cells = this.cells(job)
    cells.succeeded.value++
    if (runtimeSeconds === undefined || !Number.isFinite(runtimeSeconds)) return
    cells.runtime ??= this.runtimeFamily.cell(...cells.labels)
    observe(cells.runtime, CELERY_BUCKETS, Math.max(0, runtimeSeconds))
  }

  failed (job: JobLabels, exception: string | undefined): void {
    const cells = this.cells(job)
    const type = exceptionLabel(exception)
    let cell = cells.failed.get(type)
    if (cell === undefined) {
      cell = this.failedFamily.cell(cells.labels[0], cells.labels[1], type, cells.labels[2])
      if (cells.failed.size < 64) cells.failed.set(type, cell)
    }
    cell.value++
  }

  retried (job: JobLabels): void {
    this.cells(job).retried.value++
  }

  revoked (job: JobLabels): void {
    this.cells(job).revoked.value++
  }

  rejected (job: JobLabels): void {
    this.cells(job).rejected.value++
  }

  workers (connected: readonly WorkerHost[]): void {
    const now = this.now()
    const active = new Map<string, number>()
    const perQueue = new Map<string, number>()
    for (const w of connected) {
      const host = hostLabel(w.hostname)
      active.set(host, (active.get(host) ?? 0) + w.active)
      perQueue.set(w.queue, (perQueue.get(w.queue) ?? 0) + 1)
    }
    for (const [host, n] of active) {
      if (!this.hosts.has(host) && this.hosts.size >= this.limit) continue
      this.hosts.set(host, NaN)
      this.workerUp.cell(host).value = 1
      this.workerActive.cell(host).value = n
    }
    for (const [host, goneAt] of this.hosts) {
      if (active.has(host)) continue
      if (Number.isNaN(goneAt)) {
        this.hosts.set(host, now)
        this.workerUp.cell(host).value = 0
        this.workerActive.cell(host).value = 0
      } else if (now - goneAt >= PURGE_OFFLINE_WORKER_MS) {
        this.hosts.delete(host)
        this.workerUp.cells.delete(host)
        this.workerActive.cells.delete(host)
      }
    }
    for (const q of perQueue.keys()) this.queues.add(q)
    for (const q of this.queues) this.activeWorkers.cell(q).value = perQueue.get(q) ?? 0
  }

  /** As celery-exporter: the first event of a task on a host shows its other counters at 0 (`task-sent` excepted). */
  private cells (job: JobLabels): TaskCells {
    const name = job.name === undefined ? OTHER_LABEL : boundedLabel(job.name)
    const host = hostLabel(job.hostname)
    const key = `${job.queue}\u0000${host}\u0000${name}`
    let cells = this.tasks.get(key)
    if (cells === undefined) {
      const failed = new Map([['', this.failedFamily.cell(name, host, '', job.queue)]])
      cells = {
        labels: [name, host, job.queue],
        received: this.receivedFamily.cell(name, host, job.queue),
        started: this.startedFamily.cell(name, host, job.queue),
        succeeded: this.succeededFamily.cell(name, host, job.queue),
        failed,
        rejected: this.rejectedFamily.cell(name, host, job.queue),
        revoked: this.revokedFamily.cell(name, host, job.queue),
        retried: this.retriedFamily.cell(name, host, job.queue),
        runtime: undefined,
        wait: undefined
      }
      if (this.tasks.size < this.limit) this.tasks.set(key, cells)
    }
    return cells
  }
}
