import type { Redis } from 'ioredis'
import { CELERY, CELERY_BUCKETS, WORKER } from '../names'
import { observe, type Cell, type Family, type HistogramCell, type Store } from '../store'
import type { IORedisClass } from './ioredis'
import { LogLimiter } from '../log-limit'
import {
  FINISHED_FIELDS, SNAPSHOT_FIELDS, STACKTRACE_FIELD, WORKER_FIELD, compareIds, entryTime, finishedRow, hasListMarkers, isMarker, jobKey, jobRow, markStalledRequeues, metaKeyPattern, queueKeys,
  queueOfMetaKey, schedulerOf, streamEvent, workerConnections, type JobEvent, type QueueKeys
} from './bullmq-layout'
import type { JobLabels, JobLifecycle } from './lifecycle'
import { CeleryExporterFamilies } from './celery-exporter'
import { CELERY_STATES, next, snapshotState, type CeleryState, type CurrentState, type FinishedState, type JobTimes } from './celery-states'
import { StreamFollower, streamInfo, type FollowedStream, type StreamRead } from './stream-follower'
import { TaskNames } from './task-names'
import { RecentFinishes } from './recent-finishes'
import { safeError } from './safe-error'

export { CELERY_STATES, type CeleryState } from './celery-states'

/** The pino/Fastify logger signature, so the app's logger and the command's plain one both fit. */
export interface WorkerLogger {
  info: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
  error: (obj: object, msg: string) => void
}

export interface WorkerCollectorOptions {
  /** The ioredis class (`loadIoredis()`: an optional peer dependency, loaded by the caller). */
  IORedis: IORedisClass
  /** Redis URL of the BullMQ connection (`redis://host:port/db`). */
  broker: string
  /** Queues to follow; undefined: every queue found under `prefix`, looked up again every `discoverIntervalMs`. */
  queues?: readonly string[] | undefined
  /** BullMQ key prefix. */
  prefix: string
  log: WorkerLogger
  discoverIntervalMs?: number
  /** Longest XREAD block; also how often the loop looks at its flags when nothing happens. */
  blockMs?: number
  /** A scrape waits at most this long for queue lengths and workers, then serves the last values. */
  refreshTimeoutMs?: number
  /** A command unanswered this long means a hung connection: it is replaced. */
  commandTimeoutMs?: number
  /** Log each queue found by discovery. */
  verbose?: boolean
  /** Least time between two rebuilds of a queue's state when Redis' counts disagree with the tracked ones. */
  rebuildIntervalMs?: number
  /** Told every transition; default: danihodovic/celery-exporter's families on the same store. */
  lifecycle?: JobLifecycle
}

interface Job extends JobTimes {
  /** The `name` label it is counted under (bounded); undefined when its name could not be read. */
  label: string | undefined
  /** The worker holding it (BullMQ's `pb`, its Worker's `name`), read when it turns active. */
  hostname?: string | undefined
}

interface QueueState {
  readonly name: string
  readonly keys: QueueKeys
  readonly stream: FollowedStream
  jobs: Map<string, Job>
  /** Per job scheduler, its upcoming job. */
  schedulers: Map<string, string>
  /** Tracked jobs in a current state (not finished). */
  current: number
  /** Ids in the queue's lists whose job hash is gone, as of the last snapshot. */
  untracked: number
  needsSnapshot: boolean
  lastSnapshot: number
  lengthCell: Cell
  /** BullMQ 4 queue: its wait and paused lists may end with a marker, not a job; undefined until its meta is read. */
  listMarkers: boolean | undefined
  recentFinishes: RecentFinishes
}

/** What a gap's reconciliation found: jobs finished in it, counted from BullMQ's finished sets. */
interface Recovered {
  succeeded: number
  failed: number
  /** Ids in the sets whose hash was gone when read. */
  unreadable: number
  /** More finished than one reconciliation reads (`RECONCILE_MAX` per set). */
  truncated: boolean
}

const MAX_SCAN_ROUNDS = 10_000
const READ_COUNT = 1000
/** Most finished jobs read per set and gap; more is reported as not recovered. */
const RECONCILE_MAX = 100_000
const HASH_BATCH = 1000

/**
 * Follows BullMQ queues the way celery-prometheus-exporter follows Celery events: each queue's
 * event stream is read from the last entry applied (stream-follower.ts), so a reconnect resumes
 * where it stopped, nothing is counted twice, and events trimmed unread are counted as lost.
 * BullMQ's events become Celery states in celery-states.ts; jobs not finished are tracked by id
 * (name and state only, never data) from a snapshot of the queue's lists taken at start; queue
 * lengths and workers are read at scrape time. BullMQ's layout is in bullmq-layout.ts.
 */
export class WorkerCollector {
  private command: Redis
  private readonly blocking: Redis
  private readonly queues = new Map<string, QueueState>()
  private readonly discover: boolean
  private readonly discoverIntervalMs: number
  private readonly blockMs: number
  private readonly refreshTimeoutMs: number
  private readonly tasks: Record<CeleryState, Cell>
  private readonly names: TaskNames
  private readonly workers: Cell
  private readonly latency: HistogramCell
  private readonly queueLength: Family
  private readonly eventsLost: Family
  private readonly follower: StreamFollower
  private running = false
  private initialized = false
  private suspect = false
  private lastDiscovery = 0
  private loop: Promise<void> | undefined
  private refreshing: Promise<void> | undefined
  private wake: (() => void) | undefined
  /** Redis' clock when following began, as a stream id: a queue found later is read from there. */
  private startId = '0-0'
  private readonly logLimiter = new LogLimiter(10_000)
  private readonly lifecycle: JobLifecycle

  constructor (store: Store, private readonly options: WorkerCollectorOptions) {
    this.discover = options.queues === undefined || options.queues.length === 0
    this.discoverIntervalMs = options.discoverIntervalMs ?? 30_000
    // Discovery runs between reads, so a read never blocks past the next one.
    this.blockMs = Math.max(1, Math.min(options.blockMs ?? 5000, this.discover ? this.discoverIntervalMs : Infinity))
    this.refreshTimeoutMs = options.refreshTimeoutMs ?? 2000

    // Not namespaced: dashboards query the Celery exporter's own names.
    const asDeclared = { namespaced: false }
    const tasks = store.gauge(CELERY.tasks, asDeclared)
    this.names = new TaskNames(store.gauge(CELERY.tasksByName, asDeclared), store.histogram(CELERY.runtime, CELERY_BUCKETS, asDeclared))
    this.workers = store.gauge(CELERY.workers, asDeclared).cell()
    this.latency = store.histogram(CELERY.latency, CELERY_BUCKETS, asDeclared).cell()
    this.queueLength = store.gauge(CELERY.queueLength, asDeclared)
    this.eventsLost = store.counter(WORKER.eventsLost, asDeclared)
    this.tasks = Object.fromEntries(CELERY_STATES.map((s) => [s, tasks.cell(s)])) as Record<CeleryState, Cell>
    this.lifecycle = options.lifecycle ?? new CeleryExporterFamilies(store)

    this.command = this.commandConnection()
    // The blocking reader waits through outages; ioredis re-sends its pending XREAD on reconnect.
    this.blocking = this.watched(new options.IORedis(options.broker, { ...this.common(), maxRetriesPerRequest: null }))
    this.follower = new StreamFollower(() => this.command, this.blocking, { blockMs: this.blockMs, count: READ_COUNT }, () => {
      this.logOnce('stuck', 'warn', undefined, 'upstream-metrics-worker: a blocking read went unanswered; reconnecting')
    })
    if (!this.discover) for (const name of options.queues!) this.track(name)
  }

  private common (): Record<string, unknown> {
    // RESP2, as ioredis 5 speaks: ioredis 6 defaults to RESP3, where a raw XREAD answers a map
    // ([key, entries, …] flattened) instead of [[key, entries], …]. ioredis 5 ignores the option.
    return { connectionName: `upstream-metrics-worker:${this.options.prefix}`, lazyConnect: true, protocol: 2 }
  }

  /** Scrape-time reads fail fast while Redis is away (the scrape serves the last values); a hung one times out. */
  private commandConnection (): Redis {
    return this.watched(new this.options.IORedis(this.options.broker, {
      ...this.common(), enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: this.options.commandTimeoutMs ?? 5000
    }))
  }

  private watched (client: Redis): Redis {
    // After close() a connection still being set up fails on its own: nothing to report (the listener stays, so the error is not unhandled).
    client.on('error', (err: Error) => { if (this.running) this.logOnce('connection', 'warn', err, 'upstream-metrics-worker: Redis connection error; retrying') })
    client.on('close', () => { if (this.initialized && this.running) this.suspect = true })
    return client
  }

  /**
   * A command that timed out went to a connection that stopped answering without closing (a
   * half-open TCP connection): ioredis would wait on it for good, so it is replaced by a new one.
   */
  private replaceIfHung (err: unknown): void {
    if (!/Command timed out/.test((err as Error)?.message ?? '') || !this.running) return
    this.logOnce('hung', 'warn', undefined, 'upstream-metrics-worker: the Redis command connection stopped answering; replacing it')
    const hung = this.command
    this.command = this.commandConnection()
    hung.disconnect()
    this.command.connect().catch(() => {})
    this.suspect = true
  }

  /** Starts following; returns at once. The metrics appear when Redis answers (logged as "Connected to broker"). */
  start (): void {
    if (this.running) return
    this.running = true
    this.command.connect().catch(() => {})
    this.blocking.connect().catch(() => {})
    this.loop = this.run()
  }

  /** Resolves once both connections have ended: nothing is logged after. */
  async close (): Promise<void> {
    this.running = false
    this.wake?.()
    const clients = [this.blocking, this.command]
    // Only a connection with a socket has something to end (a reconnecting one has its timer
    // cleared by disconnect and never emits 'end'). Not events.once: it rejects on an 'error'.
    const ended = clients.map(async (c) => {
      if (['connecting', 'connect', 'ready'].includes(c.status)) await new Promise((resolve) => c.once('end', resolve))
    })
    for (const c of clients) c.disconnect()
    await this.loop
    // Bounded: a half-open connection may never see its end.
    let timer: NodeJS.Timeout | undefined
    await Promise.race([Promise.all(ended), new Promise((resolve) => { timer = setTimeout(resolve, 2000) })])
    clearTimeout(timer)
  }

  /** Reads queue lengths and connected workers; bounded by `refreshTimeoutMs`, never throws. */
  async refresh (): Promise<void> {
    if (!this.initialized || this.command.status !== 'ready') return
    // Settles on its own: a scrape that stopped waiting must not leave a rejection unhandled.
    this.refreshing ??= this.readLengthsAndWorkers()
      .catch((err: unknown) => {
        this.replaceIfHung(err)
        this.logOnce('refresh', 'warn', err, 'upstream-metrics-worker: reading queue lengths and workers failed; serving the last values')
      })
      .finally(() => { this.refreshing = undefined })
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, this.refreshTimeoutMs) })
    try {
      await Promise.race([this.refreshing, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  private async readLengthsAndWorkers (): Promise<void> {
    const queues = [...this.queues.values()]
    // One transaction: the counts and the stream's state are of the same instant.
    const multi = this.command.multi()
    multi.client('LIST')
    // Row of a queue: 6 counts, XINFO STREAM, then its meta's version until known, then (unless a BullMQ 5+ queue) the list tails.
    const rowLength = (q: QueueState): number => q.listMarkers === undefined ? 10 : q.listMarkers ? 9 : 7
    for (const q of queues) {
      const { keys } = q
      multi.llen(keys.wait).llen(keys.paused).zcard(keys.prioritized).llen(keys.active).zcard(keys.delayed).zcard(keys.waitingChildren)
        .call('XINFO', 'STREAM', keys.events)
      if (q.listMarkers === undefined) multi.hget(keys.meta, 'version')
      if (q.listMarkers !== false) multi.lindex(keys.wait, -1).lindex(keys.paused, -1)
    }
    const results = await multi.exec()
    if (results === null) return
    for (const [err] of results.slice(0, 1)) if (err !== null) throw err
    const hosts = workerConnections(String(results[0]![1]), this.options.prefix, queues.map((q) => q.name))
    this.workers.value = hosts.length
    const active = this.activeByWorker()
    // A worker name seen twice on a queue gets its active jobs once.
    this.lifecycle.workers(hosts.map((h) => {
      const key = `${h.queue}\u0000${h.hostname ?? ''}`
      const n = active.get(key) ?? 0
      active.delete(key)
      return { ...h, active: n }
    }))
    const now = Date.now()
    let stale = false
    let at = 1
    for (const q of queues) {
      const row = results.slice(at, at + rowLength(q))
      at += row.length
      row.forEach(([err], i) => { if (err !== null && i !== 6) throw err })
      const n = row.slice(0, 6).map(([, v]) => Number(v))
      if (q.listMarkers === undefined) {
        const version = row[7]![1] as string | null
        // Read again until the queue has written its meta.
        if (version !== null) q.listMarkers = hasListMarkers(version)
      }
      const markers = q.listMarkers === true ? row.slice(-2).filter(([, v]) => typeof v === 'string' && isMarker(v)).length : 0
      n[0] = n[0]! - markers
      q.lengthCell.value = n[0]! + n[1]! + n[2]!
      const [infoErr, rawInfo] = row[6]!
      const info = infoErr === null ? streamInfo(rawInfo) : undefined
      if (info === undefined) {
        // Deleted (obliterate) with nothing after it to wake the reader: checked now.
        if (q.stream.lastId !== '0-0' || q.current > 0) { this.follower.check(q.stream); stale = true }
        continue
      }
      // Jobs can leave without an event (drain, a flushed key). When every event up to this
      // instant has been applied, the tracked count must match; if not, rebuild.
      const unfinished = n.reduce((a, b) => a + b, 0)
      if (info.lastGeneratedId === q.stream.lastId && unfinished !== q.current + q.untracked && now - q.lastSnapshot >= (this.options.rebuildIntervalMs ?? 10_000)) {
        q.needsSnapshot = true
        stale = true
      }
    }
    if (stale) this.wake?.()
  }

  /** Started jobs by queue and worker name (`queue\0name`, '' for an unnamed worker). */
  private activeByWorker (): Map<string, number> {
    const counts = new Map<string, number>()
    for (const q of this.queues.values()) {
      for (const job of q.jobs.values()) {
        if (job.state !== 'STARTED') continue
        const key = `${q.name}\u0000${job.hostname ?? ''}`
        counts.set(key, (counts.get(key) ?? 0) + 1)
      }
    }
    return counts
  }

  private track (name: string): QueueState {
    let q = this.queues.get(name)
    if (q === undefined) {
      q = {
        name,
        keys: queueKeys(this.options.prefix, name),
        stream: { key: queueKeys(this.options.prefix, name).events, lastId: '0-0', position: undefined, lastIsEntry: false },
        jobs: new Map(),
        schedulers: new Map(),
        current: 0,
        untracked: 0,
        needsSnapshot: false,
        lastSnapshot: 0,
        lengthCell: this.queueLength.cell(name),
        listMarkers: undefined,
        recentFinishes: new RecentFinishes()
      }
      this.queues.set(name, q)
      // At 0 from the start, so that increase() sees the first loss.
      this.eventsLost.cell(name)
    }
    return q
  }

  private async run (): Promise<void> {
    while (this.running) {
      try {
        if (!this.initialized) {
          await this.ready()
          const [seconds, micros] = await this.command.time()
          this.startId = `${Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)}-0`
          if (this.discover) await this.discoverQueues()
          for (const q of this.queues.values()) await this.snapshot(q, true)
          this.initialized = true
          this.options.log.info({ queues: [...this.queues.keys()] }, 'upstream-metrics-worker: Connected to broker')
        } else if (this.suspect) {
          await this.ready()
          this.suspect = false
          // Whatever happened while away is seen by the next read's continuity check.
          for (const q of this.queues.values()) this.follower.check(q.stream)
          this.options.log.info({ queues: [...this.queues.keys()] }, 'upstream-metrics-worker: Connected to broker')
        } else if (this.discover && Date.now() - this.lastDiscovery >= this.discoverIntervalMs) {
          await this.discoverQueues()
        }
        for (const q of this.queues.values()) {
          if (!q.needsSnapshot) continue
          q.needsSnapshot = false
          await this.snapshot(q, false)
        }
        await this.readEvents()
      } catch (err) {
        if (!this.running) break
        this.replaceIfHung(err)
        this.logOnce('loop', 'warn', err, 'upstream-metrics-worker: following the queues failed; retrying')
        await this.sleep(1000)
      }
    }
  }

  private async ready (): Promise<void> {
    if (this.command.status === 'ready') return
    await new Promise<void>((resolve) => {
      const command = this.command
      const done = (): void => {
        command.off('ready', done)
        this.wake = undefined
        resolve()
      }
      this.wake = done
      command.on('ready', done)
    })
    if (!this.running) throw new Error('closed')
  }

  private async sleep (ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms)
      function done (): void {
        clearTimeout(timer)
        resolve()
      }
      this.wake = done
    })
    this.wake = undefined
  }

  private async discoverQueues (): Promise<void> {
    this.lastDiscovery = Date.now()
    const prefix = this.options.prefix
    let cursor = '0'
    for (let round = 0; round < MAX_SCAN_ROUNDS; round++) {
      const [nextCursor, keys] = await this.command.scan(cursor, 'MATCH', metaKeyPattern(prefix), 'COUNT', 1000)
      for (const key of keys) {
        const name = queueOfMetaKey(prefix, key)
        if (name === undefined || this.queues.has(name)) continue
        const q = this.track(name)
        if (this.options.verbose === true) this.options.log.info({ queue: name }, 'upstream-metrics-worker: following a new queue')
        if (this.initialized) {
          // Created after the start (or not seen until now): its jobs since the start are counted.
          q.stream.lastId = this.startId
          await this.snapshot(q, false)
          this.follower.check(q.stream)
        }
      }
      cursor = nextCursor
      if (cursor === '0') break
    }
  }

  /**
   * Current states from the queue's lists, read in one transaction with the stream's state.
   * With `jumpToEnd` reading resumes after the stream's last entry; without, from the last entry
   * applied, and the events in between are replayed onto the snapshot: states are set, not added,
   * so a replayed transition is harmless, and a job that finished in between is counted once, by its event.
   */
  private async snapshot (q: QueueState, jumpToEnd: boolean, reconcileAfter?: string): Promise<Recovered | undefined> {
    const { keys } = q
    const multi = this.command.multi()
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
    for (let start = 0; start < ids.length; start += HASH_BATCH) {
      const pipeline = this.command.pipeline()
      const batch = ids.slice(start, start + HASH_BATCH)
      for (const [id] of batch) pipeline.hmget(jobKey(keys, id), ...SNAPSHOT_FIELDS)
      const rows = await pipeline.exec()
      if (rows === null) throw new Error('snapshot pipeline discarded')
      batch.forEach(([id, kind], i) => {
        const [err, values] = rows[i]!
        if (err !== null) throw err
        const row = jobRow(values as Array<string | null>)
        if (row === undefined) {
          untracked++
          return
        }
        jobs.set(id, { label: this.names.label(row.name), hostname: row.worker, ...snapshotState(kind, row) })
      })
    }
    const before = q.jobs
    const recovered = finished === undefined ? undefined : await this.recoverFinished(q, before, finished as [string[], string[]])
    for (const job of q.jobs.values()) this.setState(q, job, undefined)
    for (const job of jobs.values()) {
      const state = job.state
      job.state = undefined
      this.setState(q, job, state)
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
    for (let start = 0; start < gap.length; start += HASH_BATCH) {
      const pipeline = this.command.pipeline()
      const batch = gap.slice(start, start + HASH_BATCH)
      for (const [id] of batch) pipeline.hmget(jobKey(q.keys, id), ...FINISHED_FIELDS)
      const rows = await pipeline.exec()
      if (rows === null) throw new Error('finished jobs pipeline discarded')
      batch.forEach(([id, state], i) => {
        const [err, values] = rows[i]!
        if (err !== null) throw err
        const row = finishedRow(values as Array<string | null>)
        if (row === undefined) {
          recovered.unreadable++
          return
        }
        const prior = before.get(id)
        const label = prior?.label ?? this.names.label(row.name)
        const labels: JobLabels = { name: label, queue: q.name, hostname: row.worker ?? prior?.hostname }
        const started = prior?.state === 'STARTED' || prior?.state === 'RETRY'
        if (prior === undefined) this.lifecycle.sent(labels)
        if (!started && Number.isFinite(row.processedOn)) {
          const since = prior !== undefined && Number.isFinite(prior.since) ? prior.since : row.timestamp + row.delay
          const latency = Math.max(0, row.processedOn - since) / 1000
          observe(this.latency, CELERY_BUCKETS, latency)
          this.lifecycle.started(labels, latency)
        }
        if (state === 'SUCCESS') {
          const runtime = Number.isFinite(row.processedOn) && Number.isFinite(row.finishedOn) ? Math.max(0, row.finishedOn - row.processedOn) / 1000 : undefined
          if (runtime !== undefined) observe(this.names.runtimeCell(label), CELERY_BUCKETS, runtime)
          this.lifecycle.succeeded(labels, runtime)
          recovered.succeeded++
        } else {
          this.lifecycle.failed(labels, row.stacktrace)
          recovered.failed++
        }
        this.tasks[state].value++
        this.names.states(label)[state].value++
      })
    }
    return recovered
  }

  private async readEvents (): Promise<void> {
    const queues = [...this.queues.values()]
    if (queues.length === 0) {
      await this.sleep(Math.min(this.blockMs, this.discoverIntervalMs))
      return
    }
    const reads = await this.follower.read(queues.map((q) => q.stream), () => this.running)
    // After a reconnect the state is checked before anything read is applied.
    if (this.suspect || !this.running) return
    const byStream = new Map(queues.map((q) => [q.stream, q]))
    for (const read of reads) {
      const q = byStream.get(read.stream)
      if (q !== undefined) await this.applyRead(q, read)
    }
  }

  private async applyRead (q: QueueState, read: StreamRead): Promise<void> {
    switch (read.kind) {
      case 'entries':
        await this.apply(q, read.entries)
        break
      case 'gap': {
        const how = read.lost === undefined ? 'an unknown number of events (Redis before 7.0 does not count them)' : `${read.lost} events`
        const recovered = (await this.snapshot(q, true, compareIds(q.stream.lastId, this.startId) < 0 ? this.startId : q.stream.lastId))!
        const found = recovered.succeeded + recovered.failed
        const unrecovered = [
          recovered.unreadable > 0 ? `${recovered.unreadable} more had their hash removed before it was read` : '',
          recovered.truncated ? `more than ${RECONCILE_MAX} finished in the gap, the rest is not counted` : ''
        ].filter((x) => x !== '').join('; ')
        // With what was recovered, so a scrape never shows the loss without it.
        this.eventsLost.cell(q.name).value += read.lost ?? 1
        this.logOnce(`lost:${q.name}`, 'warn', undefined,
          `upstream-metrics-worker: ${how} of queue "${q.name}" were trimmed from its event stream before they were read (BullMQ keeps streams.events.maxLen of them: a burst longer than that while this process was paused, slow or disconnected; upstream_metrics_worker_events_lost_total); ` +
          `recovered ${found} finished jobs (${recovered.succeeded} succeeded, ${recovered.failed} failed) from BullMQ's completed and failed sets${unrecovered === '' ? '' : ` (${unrecovered})`}; ` +
          'jobs removed as they finished inside the gap (removeOnComplete/removeOnFail, or past their keep count) cannot be recovered and are not counted, nor the retries and stalls in the gap and the sends of jobs still unfinished; current states rebuilt')
        break
      }
      case 'recreated':
        this.logOnce(`recreated:${q.name}`, 'warn', undefined, `upstream-metrics-worker: the event stream was recreated or deleted (queue "${q.name}" obliterated, or Redis restarted empty); reading it from its start`)
        q.stream.lastId = '0-0'
        q.stream.position = 0
        q.stream.lastIsEntry = false
        await this.snapshot(q, false)
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
      const pipeline = this.command.pipeline()
      for (const id of unknown) pipeline.hget(jobKey(q.keys, id), 'name')
      for (const [, e] of detailed) pipeline.hget(jobKey(q.keys, e.jobId), e.type === 'active' ? WORKER_FIELD : STACKTRACE_FIELD)
      const rows = await pipeline.exec()
      if (rows === null) throw new Error('name pipeline discarded')
      for (const [err] of rows) if (err !== null) throw err;
      [...unknown].forEach((id, i) => names.set(id, rows[i]![1] as string | null))
      detailed.forEach(([id], i) => details.set(id, rows[unknown.size + i]![1] as string | null))
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
        job = { label: name === undefined || name === null ? undefined : this.names.label(name), state: undefined, since: NaN, startedAt: NaN }
        q.jobs.set(event.jobId, job)
      }
      this.transition(q, job, event, entryTime(id), details.get(id) ?? undefined)
    })
  }

  /** `detail`: the worker's name on `active`, the stored stacks on `failed`. */
  private transition (q: QueueState, job: Job, event: JobEvent, t: number, detail: string | undefined): void {
    const { jobId } = event
    if (event.type === 'added') {
      if (job.label === undefined && event.name !== undefined) job.label = this.names.label(event.name)
      this.replaceScheduled(q, jobId)
    }
    if (event.type === 'active') job.hostname = detail
    const labels: JobLabels = { name: job.label, queue: q.name, hostname: job.hostname }
    if (event.type === 'added') this.lifecycle.sent(labels)
    if (event.type === 'stalled') this.lifecycle.rejected(labels)
    const outcome = next(job, event, t)
    switch (outcome.kind) {
      case 'current':
        if (outcome.latency !== undefined) observe(this.latency, CELERY_BUCKETS, outcome.latency)
        if (event.type === 'active') this.lifecycle.started(labels, outcome.latency)
        if (outcome.retried) this.lifecycle.retried(labels)
        job.since = outcome.job.since
        job.startedAt = outcome.job.startedAt
        this.setState(q, job, outcome.job.state)
        break
      case 'finished':
        if (outcome.runtime !== undefined && job.label !== undefined) observe(this.names.runtimeCell(job.label), CELERY_BUCKETS, outcome.runtime)
        if (outcome.state === 'SUCCESS') this.lifecycle.succeeded(labels, outcome.runtime)
        else if (outcome.state === 'FAILURE') this.lifecycle.failed(labels, detail)
        else this.lifecycle.revoked(labels)
        if (outcome.state !== 'REVOKED') q.recentFinishes.add(jobId, t)
        this.finish(q, jobId, job, outcome.state)
        break
      case 'forgotten':
        this.setState(q, job, undefined)
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
      this.setState(q, job, undefined)
      q.jobs.delete(previous)
    }
  }

  private setState (q: QueueState, job: Job, state: CurrentState | undefined): void {
    if (job.state === state) return
    if (job.state !== undefined) {
      q.current--
      this.tasks[job.state].value--
      if (job.label !== undefined) this.names.states(job.label)[job.state].value--
    }
    job.state = state
    if (state !== undefined) {
      q.current++
      this.tasks[state].value++
      if (job.label !== undefined) this.names.states(job.label)[state].value++
    }
  }

  private finish (q: QueueState, jobId: string, job: Job, state: FinishedState): void {
    this.setState(q, job, undefined)
    this.tasks[state].value++
    if (job.label !== undefined) this.names.states(job.label)[state].value++
    q.jobs.delete(jobId)
  }

  private logOnce (kind: string, level: 'warn' | 'error', err: unknown, msg: string): void {
    if (this.logLimiter.admit(kind) === false) return
    try {
      this.options.log[level](err === undefined ? {} : { err: safeError(err, this.options.broker) }, msg)
    } catch {}
  }
}
