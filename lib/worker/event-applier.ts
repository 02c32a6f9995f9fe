import type { Redis } from 'ioredis'
import { STACKTRACE_FIELD, WORKER_FIELD, compareIds, entryTime, jobKey, markStalledRequeues, schedulerOf, streamEvent, type JobEvent } from './bullmq-layout'
import { next } from './celery-states'
import { JobFields } from './job-fields'
import type { JobRecorder } from './job-recorder'
import type { JobLabels } from './lifecycle'
import type { Job, QueueState } from './queues'
import type { QueueSnapshots } from './snapshot'
import type { StreamFollower, StreamRead } from './stream-follower'

/**
 * Applies what the stream follower read to a queue's tracked jobs: each event becomes a Celery
 * state (celery-states.ts) and is counted by the recorder; a gap is recovered, a recreated
 * stream read again from its start.
 */
export class EventApplier {
  private readonly fields = new JobFields()

  constructor (
    private readonly command: () => Redis,
    private readonly recorder: JobRecorder,
    private readonly snapshots: QueueSnapshots,
    private readonly follower: StreamFollower,
    private readonly warn: (kind: string, err: unknown, msg: string) => void
  ) {}

  /** `startId`: where following began; a gap is never reconciled from before it. */
  async applyRead (q: QueueState, read: StreamRead, startId: string): Promise<void> {
    switch (read.kind) {
      case 'entries':
        await this.apply(q, read.entries)
        break
      case 'gap':
        await this.snapshots.recoverGap(q, read.lost, compareIds(q.stream.lastId, startId) < 0 ? startId : q.stream.lastId)
        break
      case 'recreated':
        this.warn(`recreated:${q.name}`, undefined, `upstream-metrics-worker: the event stream was recreated or deleted (queue "${q.name}" obliterated, or Redis restarted empty); reading it from its start`)
        q.stream.lastId = '0-0'
        q.stream.position = 0
        q.stream.lastIsEntry = false
        await this.snapshots.take(q, false)
        this.follower.check(q.stream)
        break
    }
  }

  private async apply (q: QueueState, entries: Array<[string, string[]]>): Promise<void> {
    const parsed = entries.map(([id, list]) => [id, streamEvent(list)] as const)
    const events = parsed.map(([, e]) => e.kind === 'job' ? e.event : undefined)
    markStalledRequeues(events)
    // Read before applying anything: names of jobs first seen here (added before the exporter
    // looked), and for the celery-exporter families the worker on `active`, the stacks on `failed`.
    const unknown = new Set<string>()
    const detailed: Array<[string, JobEvent]> = []
    parsed.forEach(([id], i) => {
      const e = events[i]
      if (e === undefined) return
      if (e.type !== 'added' && !q.jobs.has(e.jobId)) unknown.add(e.jobId)
      if (e.type === 'active' || e.type === 'failed') detailed.push([id, e])
    })
    const names = new Map<string, string | null>()
    const details = new Map<string, string | null>()
    if (unknown.size > 0 || detailed.length > 0) {
      const values = await this.fields.read(this.command(), [
        ...[...unknown].map((id) => [jobKey(q.keys, id), 'name'] as const),
        ...detailed.map(([, e]) => [jobKey(q.keys, e.jobId), e.type === 'active' ? WORKER_FIELD : STACKTRACE_FIELD] as const)
      ]);
      [...unknown].forEach((id, i) => names.set(id, values[i]!))
      detailed.forEach(([id], i) => details.set(id, values[unknown.size + i]!))
    }
    parsed.forEach(([id, e], i) => {
      q.stream.lastId = id
      q.stream.lastIsEntry = true
      if (q.stream.position !== undefined) q.stream.position++
      if (e.kind === 'cleaned') q.needsSnapshot = true
      const event = events[i]
      if (event === undefined) return
      let job = q.jobs.get(event.jobId)
      if (job === undefined) {
        const name = event.type === 'added' ? event.name : names.get(event.jobId)
        job = { label: name === undefined || name === null ? undefined : this.recorder.label(name), state: undefined, since: NaN, startedAt: NaN }
        q.jobs.set(event.jobId, job)
      }
      this.transition(q, job, event, entryTime(id), details.get(id) ?? undefined)
    })
  }

  /** `detail`: the worker's name on `active`, the stored stacks on `failed`. */
  private transition (q: QueueState, job: Job, event: JobEvent, t: number, detail: string | undefined): void {
    const { jobId } = event
    if (event.type === 'added') {
      if (job.label === undefined && event.name !== undefined) job.label = this.recorder.label(event.name)
      this.replaceScheduled(q, jobId)
    }
    if (event.type === 'active') job.hostname = detail
    const labels: JobLabels = { name: job.label, queue: q.name, hostname: job.hostname }
    if (event.type === 'added') this.recorder.sent(labels)
    if (event.type === 'stalled') this.recorder.rejected(labels)
    const outcome = next(job, event, t)
    switch (outcome.kind) {
      case 'current':
        // next() gives a latency on `active` only.
        if (event.type === 'active') this.recorder.started(labels, outcome.latency)
        if (outcome.retried) this.recorder.retried(labels)
        job.since = outcome.job.since
        job.startedAt = outcome.job.startedAt
        this.recorder.setState(q, job, outcome.job.state)
        break
      case 'finished':
        if (outcome.state !== 'REVOKED') q.recentFinishes.add(jobId, t)
        this.recorder.setState(q, job, undefined)
        this.recorder.finished(labels, outcome.state, outcome.runtime, detail)
        q.jobs.delete(jobId)
        break
      case 'forgotten':
        this.recorder.setState(q, job, undefined)
        q.jobs.delete(jobId)
        break
    }
  }

  /** A scheduler's new job replaces its upcoming one if that had not started (upsertJobScheduler removes it without an event). */
  private replaceScheduled (q: QueueState, jobId: string): void {
    const scheduler = schedulerOf(jobId)
    if (scheduler === undefined) return
    const previous = q.schedulers.get(scheduler)
    q.schedulers.set(scheduler, jobId)
    if (previous === undefined || previous === jobId) return
    const job = q.jobs.get(previous)
    if (job?.state === 'PENDING' || job?.state === 'RECEIVED') {
      this.recorder.setState(q, job, undefined)
      q.jobs.delete(previous)
    }
  }
}
