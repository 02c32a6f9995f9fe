import type { Redis } from 'ioredis'
import type { Family } from '../store'
import { FINISHED_FIELDS, SNAPSHOT_FIELDS, entryTime, finishedRow, hasListMarkers, isMarker, jobKey, jobRow, schedulerOf } from './bullmq-layout'
import { snapshotState, type FinishedState } from './celery-states'
import type { JobRecorder } from './job-recorder'
import type { Job, QueueState } from './queues'
import { streamInfo } from './stream-follower'

/** What a gap's reconciliation found: jobs finished in it, counted from BullMQ's finished sets. */
interface Recovered {
  succeeded: number
  failed: number
  /** Ids in the sets whose hash was gone when read. */
  unreadable: number
  /** More finished than one reconciliation reads (`RECONCILE_MAX` per set). */
  truncated: boolean
}

/** Most finished jobs read per set and gap; more is reported as not recovered. */
const RECONCILE_MAX = 100_000
const HASH_BATCH = 1000

/**
 * A queue's current states rebuilt from its lists (at start, when a stream was recreated, when
 * Redis' counts disagree with the tracked ones), and gap recovery: after events were trimmed
 * unread, the jobs that finished in the gap are counted from BullMQ's completed and failed sets.
 */
export class QueueSnapshots {
  constructor (
    private readonly command: () => Redis,
    private readonly recorder: JobRecorder,
    private readonly eventsLost: Family,
    private readonly warn: (kind: string, err: unknown, msg: string) => void
  ) {}

  /** `lost` events of the queue were trimmed unread after `after` (a stream id): counts what can be recovered, and the loss. */
  async recoverGap (q: QueueState, lost: number | undefined, after: string): Promise<void> {
    const how = lost === undefined ? 'an unknown number of events (Redis before 7.0 does not count them)' : `${lost} events`
    const recovered = (await this.take(q, true, after))!
    const found = recovered.succeeded + recovered.failed
    const unrecovered = [
      recovered.unreadable > 0 ? `${recovered.unreadable} more had their hash removed before it was read` : '',
      recovered.truncated ? `more than ${RECONCILE_MAX} finished in the gap, the rest is not counted` : ''
    ].filter((x) => x !== '').join('; ')
    // With what was recovered, so a scrape never shows the loss without it.
    this.eventsLost.cell(q.name).value += lost ?? 1
    this.warn(`lost:${q.name}`, undefined,
      `upstream-metrics-worker: ${how} of queue "${q.name}" were trimmed from its event stream before they were read (BullMQ keeps streams.events.maxLen of them: a burst longer than that while this process was paused, slow or disconnected; upstream_metrics_worker_events_lost_total); ` +
      `recovered ${found} finished jobs (${recovered.succeeded} succeeded, ${recovered.failed} failed) from BullMQ's completed and failed sets${unrecovered === '' ? '' : ` (${unrecovered})`}; ` +
      'jobs removed as they finished inside the gap (removeOnComplete/removeOnFail, or past their keep count) cannot be recovered and are not counted, nor the retries and stalls in the gap and the sends of jobs still unfinished; current states rebuilt')
  }

  /**
   * Current states from the queue's lists, read in one transaction with the stream's state.
   * With `jumpToEnd` reading resumes after the stream's last entry; without, from the last entry
   * applied, and the events in between are replayed onto the snapshot: states are set, not added,
   * so a replayed transition is harmless, and a job that finished in between is counted once, by its event.
   */
  async take (q: QueueState, jumpToEnd: boolean, reconcileAfter?: string): Promise<Recovered | undefined> {
    const { keys } = q
    const multi = this.command().multi()
      .call('XINFO', 'STREAM', keys.events)
      .lrange(keys.wait, 0, -1)
      .lrange(keys.paused, 0, -1)
      .zrange(keys.prioritized, 0, -1)
      .zrange(keys.waitingChildren, 0, -1)
      .zrange(keys.delayed, 0, -1)
      .lrange(keys.active, 0, -1)
      .hget(keys.meta, 'version')
    // In the same instant as the stream's end: a job in a finished set has its event at or before it.
    const lower = reconcileAfter === undefined ? undefined : q.recentFinishes.lowerBound(entryTime(reconcileAfter))
    if (lower !== undefined) {
      for (const set of [keys.completed, keys.failed]) multi.zrangebyscore(set, `(${lower}`, '+inf', 'LIMIT', 0, RECONCILE_MAX)
    }
    const lists = await multi.exec()
    if (lists === null) throw new Error('snapshot transaction discarded')
    const finished = lower === undefined ? undefined : lists.splice(-2).map(([err, ids]) => { if (err !== null) throw err; return ids as string[] })
    const [infoErr, rawInfo] = lists.shift()!
    const info = infoErr === null ? streamInfo(rawInfo) : undefined
    const [versionErr, version] = lists.pop()!
    if (versionErr !== null) throw versionErr
    if (version !== null) q.listMarkers = hasListMarkers(version as string)
    const ids: Array<[string, 'waiting' | 'delayed' | 'active' | 'children']> = []
    lists.forEach(([err, value], i) => {
      if (err !== null) throw err
      const kind = i < 3 ? 'waiting' : i === 3 ? 'children' : i === 4 ? 'delayed' : 'active'
      for (const id of value as string[]) if (!isMarker(id)) ids.push([id, kind])
    })
    const jobs = new Map<string, Job>()
    let untracked = 0
    await this.readJobs(q, ids, SNAPSHOT_FIELDS, 'snapshot', ([id, kind], values) => {
      const row = jobRow(values)
      if (row === undefined) {
        untracked++
        return
      }
      jobs.set(id, { label: this.recorder.label(row.name), hostname: row.worker, ...snapshotState(kind, row) })
    })
    const before = q.jobs
    const recovered = finished === undefined ? undefined : await this.recoverFinished(q, before, finished as [string[], string[]])
    for (const job of q.jobs.values()) this.recorder.setState(q, job, undefined)
    for (const job of jobs.values()) {
      const state = job.state
      job.state = undefined
      this.recorder.setState(q, job, state)
    }
    q.jobs = jobs
    q.schedulers.clear()
    for (const id of jobs.keys()) {
      const scheduler = schedulerOf(id)
      if (scheduler !== undefined) q.schedulers.set(scheduler, id)
    }
    q.untracked = untracked
    q.lastSnapshot = Date.now()
    if (jumpToEnd) {
      q.stream.lastId = info?.lastGeneratedId ?? '0-0'
      q.stream.position = info === undefined ? 0 : info.entriesAdded
      q.stream.lastIsEntry = info !== undefined && info.length > 0
    }
    return recovered
  }

  /**
   * Counts the jobs of `[completed, failed]` (ids finished after the last event applied, give or
   * take the clock skew) whose finish was not applied from an event: they finished in a gap. Their
   * name, worker and times come from their hashes, as their events would have told them.
   */
  private async recoverFinished (q: QueueState, before: ReadonlyMap<string, Job>, [completed, failed]: [string[], string[]]): Promise<Recovered> {
    const recovered: Recovered = { succeeded: 0, failed: 0, unreadable: 0, truncated: completed.length >= RECONCILE_MAX || failed.length >= RECONCILE_MAX }
    const gap: Array<[string, FinishedState]> = [
      ...completed.filter((id) => !q.recentFinishes.has(id)).map((id): [string, FinishedState] => [id, 'SUCCESS']),
      ...failed.filter((id) => !q.recentFinishes.has(id)).map((id): [string, FinishedState] => [id, 'FAILURE'])
    ]
    // Every batch is read before any is counted: a read that fails part-way is retried whole, counted once.
    const rows: Array<[string, FinishedState, ReturnType<typeof finishedRow>]> = []
    await this.readJobs(q, gap, FINISHED_FIELDS, 'finished jobs', ([id, state], values) => { rows.push([id, state, finishedRow(values)]) })
    for (const [id, state, row] of rows) {
      if (row === undefined) {
        recovered.unreadable++
        continue
      }
      // The transitions its events would have told: sent (unless tracked), started (unless seen), finished.
      const prior = before.get(id)
      const labels = { name: prior?.label ?? this.recorder.label(row.name), queue: q.name, hostname: row.worker ?? prior?.hostname }
      if (prior === undefined) this.recorder.sent(labels)
      const started = prior?.state === 'STARTED' || prior?.state === 'RETRY'
      if (!started && Number.isFinite(row.processedOn)) {
        const since = prior !== undefined && Number.isFinite(prior.since) ? prior.since : row.timestamp + row.delay
        this.recorder.started(labels, Math.max(0, row.processedOn - since) / 1000)
      }
      const runtime = state === 'SUCCESS' && Number.isFinite(row.processedOn) && Number.isFinite(row.finishedOn) ? Math.max(0, row.finishedOn - row.processedOn) / 1000 : undefined
      this.recorder.finished(labels, state, runtime, row.stacktrace)
      recovered[state === 'SUCCESS' ? 'succeeded' : 'failed']++
    }
    return recovered
  }

  /** HMGET of `fields` from the hash of each job, `HASH_BATCH` a round trip; `each` takes a batch's rows before the next is read. */
  private async readJobs<T extends readonly [string, unknown]> (q: QueueState, jobs: readonly T[], fields: readonly string[], what: string, each: (job: T, values: Array<string | null>) => void): Promise<void> {
    for (let start = 0; start < jobs.length; start += HASH_BATCH) {
      const pipeline = this.command().pipeline()
      const batch = jobs.slice(start, start + HASH_BATCH)
      for (const [id] of batch) pipeline.hmget(jobKey(q.keys, id), ...fields)
      const rows = await pipeline.exec()
      if (rows === null) throw new Error(`${what} pipeline discarded`)
      batch.forEach((job, i) => {
        const [err, values] = rows[i]!
        if (err !== null) throw err
        each(job, values as Array<string | null>)
      })
    }
  }
}
