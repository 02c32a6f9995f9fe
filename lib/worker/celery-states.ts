import type { JobEvent } from './bullmq-layout'

/** Celery's `ALL_STATES`, in the order celery-prometheus-exporter's README lists them. */
export const CELERY_STATES = ['PENDING', 'RECEIVED', 'STARTED', 'SUCCESS', 'FAILURE', 'REVOKED', 'RETRY'] as const
export type CeleryState = typeof CELERY_STATES[number]
export type FinishedState = 'SUCCESS' | 'FAILURE' | 'REVOKED'
export type CurrentState = Exclude<CeleryState, FinishedState>

/** What the machine knows of a job not finished: its state and two instants (ms; NaN when unknown). */
export interface JobTimes {
  state: CurrentState | undefined
  /** When the job became runnable, for the latency. */
  since: number
  /** When its current attempt started, for the runtime. */
  startedAt: number
}

export type Outcome =
  /**
   * The job is (still) in a current state; `latency` (s) when a first start is observed; `retried`
   * when a failed attempt is to run again (not a stall's requeue).
   */
  | { kind: 'current', job: JobTimes, latency?: number, retried: boolean }
  /** The job finished; `runtime` (s) for a success whose start was seen. */
  | { kind: 'finished', state: FinishedState, runtime?: number }
  /** Removed after it had finished (`removeOnComplete`, `clean`): it leaves without a state. */
  | { kind: 'forgotten' }
  /** The event changes nothing. */
  | { kind: 'unchanged' }

/** `removed` from these was a job that had not finished: Celery's REVOKED. */
const UNFINISHED = new Set(['wait', 'waiting', 'paused', 'prioritized', 'delayed', 'waiting-children', 'active'])
/**
 * `waiting` from these is a retry: `active` (moveJobToWait, moveJobFromActiveToWait, and retryJob
 * since BullMQ 5.58.6) or `failed` (retryJob before 5.58.6, and BullMQ 4).
 */
const RETRY_FROM = new Set(['active', 'failed'])

function seconds (from: number, to: number): number {
  return Math.max(0, to - from) / 1000
}

/**
 * BullMQ's job lifecycle as Celery's states (docs/workers.md has the table): the state a job
 * takes after one event at Redis time `t` (ms), and what is observed on the way. Pure; `job` is
 * not changed.
 */
export function next (job: JobTimes, event: Pick<JobEvent, 'type' | 'prev' | 'delay'>, t: number): Outcome {
  const current = (state: CurrentState, changes: Partial<JobTimes> = {}, latency?: number, retried = false): Outcome => {
    const out: Outcome = { kind: 'current', job: { ...job, ...changes, state }, retried }
    if (latency !== undefined) out.latency = latency
    return out
  }
  switch (event.type) {
    case 'added':
    case 'stalled':
      return { kind: 'unchanged' }
    case 'waiting':
      if (RETRY_FROM.has(event.prev ?? '')) return current('RETRY', {}, undefined, true)
      // A stall's requeue (bullmq-layout's markStalledRequeues): to run again, not a failed attempt.
      if (event.prev === 'stalled') return current('RETRY')
      if (event.prev === 'delayed') {
        if (job.state === 'RETRY') return { kind: 'unchanged' }
        return current('PENDING', Number.isNaN(job.since) ? { since: t } : {})
      }
      return current('PENDING', { since: t })
    case 'delayed':
      if (job.state === 'STARTED' || job.state === 'RETRY') return current('RETRY', {}, undefined, job.state === 'STARTED')
      return current('RECEIVED', { since: Number(event.delay) })
    case 'waiting-children':
      return current('PENDING', { since: NaN })
    case 'active': {
      // As celery-prometheus-exporter: no latency for a retry.
      const first = (job.state === 'PENDING' || job.state === 'RECEIVED') && Number.isFinite(job.since)
      return current('STARTED', { startedAt: t }, first ? seconds(job.since, t) : undefined)
    }
    case 'completed':
      return Number.isFinite(job.startedAt)
        ? { kind: 'finished', state: 'SUCCESS', runtime: seconds(job.startedAt, t) }
        : { kind: 'finished', state: 'SUCCESS' }
    case 'failed':
      return { kind: 'finished', state: 'FAILURE' }
    case 'removed':
      return UNFINISHED.has(event.prev ?? '') ? { kind: 'finished', state: 'REVOKED' } : { kind: 'forgotten' }
  }
}

/** The state of a job found in the queue's lists by a snapshot. */
export function snapshotState (
  list: 'waiting' | 'children' | 'delayed' | 'active',
  row: { timestamp: number, delay: number, processedOn: number, attempts: number }
): JobTimes {
  const retried = row.attempts > 0
  switch (list) {
    case 'active': return { state: 'STARTED', since: NaN, startedAt: row.processedOn }
    case 'delayed': return { state: retried ? 'RETRY' : 'RECEIVED', since: row.timestamp + row.delay, startedAt: NaN }
    case 'children': return { state: retried ? 'RETRY' : 'PENDING', since: NaN, startedAt: NaN }
    case 'waiting': return { state: retried ? 'RETRY' : 'PENDING', since: row.timestamp, startedAt: NaN }
  }
}
