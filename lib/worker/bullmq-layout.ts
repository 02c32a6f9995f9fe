/**
 * What the collector knows of BullMQ's private Redis layout: key names, event stream fields,
 * job hash fields, worker connection names, and where versions differ. BullMQ documents none of
 * it; each rule names the Lua script or class it was read from (taskforcesh/bullmq, src/commands
 * and src/classes), so a new BullMQ release is checked here and nowhere else.
 */

export interface QueueKeys {
  /** `<prefix>:<queue>`: a job's hash is `<base>:<id>`. */
  readonly base: string
  readonly events: string
  readonly wait: string
  readonly paused: string
  readonly prioritized: string
  readonly active: string
  readonly delayed: string
  readonly waitingChildren: string
  /** Finished jobs, scored by `finishedOn` (moveToFinished, in the script that adds the `completed`/`failed` event). */
  readonly completed: string
  readonly failed: string
  readonly meta: string
}

export function queueKeys (prefix: string, queue: string): QueueKeys {
  const base = `${prefix}:${queue}`
  return {
    base,
    events: `${base}:events`,
    wait: `${base}:wait`,
    paused: `${base}:paused`,
    prioritized: `${base}:prioritized`,
    active: `${base}:active`,
    delayed: `${base}:delayed`,
    waitingChildren: `${base}:waiting-children`,
    completed: `${base}:completed`,
    failed: `${base}:failed`,
    meta: `${base}:meta`
  }
}

export function jobKey (keys: QueueKeys, jobId: string): string {
  return `${keys.base}:${jobId}`
}

/** Every queue has a `<prefix>:<queue>:meta` hash (Queue's constructor writes its version there): the SCAN pattern that finds them. */
export function metaKeyPattern (prefix: string): string {
  return `${prefix.replace(/[*?[\]\\]/g, '\\$&')}:*:meta`
}

/** The queue of a meta key, or undefined for keys that are not a queue's (BullMQ refuses ':' in queue names). */
export function queueOfMetaKey (prefix: string, key: string): string | undefined {
  const name = key.slice(prefix.length + 1, -':meta'.length)
  return name === '' || name.includes(':') ? undefined : name
}

/** A worker connection: its queue, and its name when the Worker was given one. */
export interface WorkerConnection {
  queue: string
  hostname: string | undefined
}

/**
 * A BullMQ worker names its blocking connection `<prefix>:<base64 queue>`, plus `:w:<name>` when
 * the worker is named (QueueBase.clientName, Worker); what `getWorkersCount()` counts. Answers the
 * connections of `CLIENT LIST` that belong to workers of these queues.
 */
export function workerConnections (clientList: string, prefix: string, queues: readonly string[]): WorkerConnection[] {
  const byName = new Map(queues.map((q) => [`${prefix}:${Buffer.from(q).toString('base64')}`, q]))
  const found: WorkerConnection[] = []
  for (const line of clientList.split('\n')) {
    const match = / name=(\S*)/.exec(line)
    if (match === null || match[1] === '') continue
    const name = match[1]!
    const w = name.indexOf(':w:')
    const queue = byName.get(w === -1 ? name : name.slice(0, w))
    if (queue !== undefined) found.push({ queue, hostname: w === -1 ? undefined : name.slice(w + 3) })
  }
  return found
}

/**
 * The job hash fields a snapshot reads, in this order. BullMQ 4 wrote `attemptsMade`; 5 writes `atm`
 * (moveToFinished, v5.0). `pb` (processed by): the name of the Worker that took the job.
 */
export const SNAPSHOT_FIELDS = ['name', 'timestamp', 'delay', 'processedOn', 'atm', 'attemptsMade', 'pb'] as const
/** The job hash field naming the worker that took it (moveToActive), read on `active`. */
export const WORKER_FIELD = 'pb'
/** The job hash field holding its error stacks (a JSON array, one per attempt), read on `failed`. */
export const STACKTRACE_FIELD = 'stacktrace'

export interface JobRow {
  name: string
  /** When the job was added (ms). */
  timestamp: number
  delay: number
  processedOn: number
  /** Attempts already made: above 0, the job is waiting for a retry. */
  attempts: number
  /** The worker that took it last (`pb`). */
  worker: string | undefined
}

/** A job hash read with `SNAPSHOT_FIELDS`; undefined when the hash is gone (removed since it was listed). */
export function jobRow (values: ReadonlyArray<string | null>): JobRow | undefined {
  const [name, timestamp, delay, processedOn, atm, attemptsMade, pb] = values
  if (name === null || name === undefined) return undefined
  return {
    name,
    timestamp: Number(timestamp),
    delay: Number(delay ?? 0),
    processedOn: Number(processedOn ?? NaN),
    attempts: Math.max(Number(atm ?? 0), Number(attemptsMade ?? 0)) || 0,
    worker: pb ?? undefined
  }
}

/** The fields a finished job is read with: `SNAPSHOT_FIELDS`, then when it finished and its stacks. */
export const FINISHED_FIELDS = [...SNAPSHOT_FIELDS, 'finishedOn', STACKTRACE_FIELD] as const

export interface FinishedRow extends JobRow {
  finishedOn: number
  stacktrace: string | undefined
}

/** A job hash read with `FINISHED_FIELDS`; undefined when the hash is gone. */
export function finishedRow (values: ReadonlyArray<string | null>): FinishedRow | undefined {
  const row = jobRow(values)
  if (row === undefined) return undefined
  const [finishedOn, stacktrace] = values.slice(SNAPSHOT_FIELDS.length)
  return { ...row, finishedOn: Number(finishedOn ?? NaN), stacktrace: stacktrace ?? undefined }
}

/**
 * BullMQ 4 keeps a marker entry in the wait list (`0:<delay>`, addDelayMarkerIfNeeded) that is not a
 * job; 5 moved markers to their own key.
 */
export function isMarker (listEntry: string): boolean {
  return listEntry.startsWith('0:')
}

/**
 * Whether a queue's lists can hold BullMQ 4's markers, from the `version` field of its meta hash
 * (`bullmq:4.18.3`, written by each Queue). A marker is pushed only into an empty list, so it is
 * at the list's tail (index -1) until a worker takes it.
 */
export function hasListMarkers (version: string | null): boolean {
  const match = /^bullmq:(\d+)\./.exec(version ?? '')
  return match !== null && Number(match[1]) < 5
}

/** The event types that move one job between states (the Lua scripts' `XADD … "event", …`). */
export type JobEventType = 'added' | 'waiting' | 'delayed' | 'waiting-children' | 'active' | 'completed' | 'failed' | 'removed' | 'stalled'

export interface JobEvent {
  type: JobEventType
  jobId: string
  /** `added` carries the job's name. */
  name?: string | undefined
  /** The state the job left, where the script says it (`waiting`, `removed`, `active`). */
  prev?: string | undefined
  /** `delayed`: the time (ms) the job becomes due. */
  delay?: number | undefined
  /** `failed`: the error message (`failedReason`). */
  failedReason?: string | undefined
}

const JOB_EVENT_TYPES = new Set<string>(['added', 'waiting', 'delayed', 'waiting-children', 'active', 'completed', 'failed', 'removed', 'stalled'])

/**
 * A stalled job is put back to wait (`waiting` from `active`) and then `stalled` is written, in one
 * script (moveStalledJobsToWait): BullMQ's requeue of a job whose worker lost its lock, not a failed
 * attempt. Such a `waiting` takes `prev: 'stalled'` here.
 */
export function markStalledRequeues (events: ReadonlyArray<JobEvent | undefined>): void {
  for (let i = 0; i + 1 < events.length; i++) {
    const e = events[i]
    const after = events[i + 1]
    if (e?.type === 'waiting' && e.prev === 'active' && after?.type === 'stalled' && after.jobId === e.jobId) e.prev = 'stalled'
  }
}

export type StreamEvent =
  | { kind: 'job', event: JobEvent }
  /** `clean` removes jobs with one event for all (cleanJobsInSet). */
  | { kind: 'cleaned' }
  | { kind: 'other' }

/** One entry of `<prefix>:<queue>:events`, a flat field/value list. */
export function streamEvent (list: readonly string[]): StreamEvent {
  let event: string | undefined
  let jobId: string | undefined
  let name: string | undefined
  let prev: string | undefined
  let delay: string | undefined
  let failedReason: string | undefined
  for (let i = 0; i + 1 < list.length; i += 2) {
    const value = list[i + 1]!
    switch (list[i]) {
      case 'event': event = value; break
      case 'jobId': jobId = value; break
      case 'name': name = value; break
      case 'prev': prev = value; break
      case 'delay': delay = value; break
      case 'failedReason': failedReason = value; break
    }
  }
  if (event === 'cleaned') return { kind: 'cleaned' }
  if (event === undefined || jobId === undefined || !JOB_EVENT_TYPES.has(event)) return { kind: 'other' }
  return { kind: 'job', event: { type: event as JobEventType, jobId, name, prev, delay: delay === undefined ? undefined : Number(delay), failedReason } }
}

/**
 * Job schedulers (and repeatable jobs before them) name their jobs `repeat:<scheduler>:<millis>`
 * and keep one upcoming job per scheduler; `upsertJobScheduler` replacing a scheduler removes that
 * job without an event (addJobScheduler's removeJobFromScheduler).
 */
export function schedulerOf (jobId: string): string | undefined {
  if (!jobId.startsWith('repeat:')) return undefined
  const end = jobId.lastIndexOf(':')
  return end > 'repeat:'.length ? jobId.slice(0, end) : undefined
}

/** Stream ids compare as (milliseconds, sequence). */
export function compareIds (a: string, b: string): number {
  const [am, as] = a.split('-').map(Number) as [number, number]
  const [bm, bs] = b.split('-').map(Number) as [number, number]
  return am !== bm ? am - bm : as - bs
}

/** The Redis time (ms) at which a stream entry was added. */
export function entryTime (id: string): number {
  return Number(id.slice(0, id.indexOf('-')))
}
