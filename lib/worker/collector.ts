import type { Redis } from 'ioredis'
import { CELERY, CELERY_BUCKETS } from '../names'
import { observe, type Cell, type Family, type HistogramCell, type Store } from '../store'
import type { IORedisClass } from './ioredis'
import { LogLimiter } from '../log-limit'
import type { JobLabels, JobLifecycle } from './lifecycle'
import { CeleryExporterFamilies } from './celery-exporter'

/** Celery's `ALL_STATES`, in the order celery-prometheus-exporter's README lists them. */
export const CELERY_STATES = ['PENDING', 'RECEIVED', 'STARTED', 'SUCCESS', 'FAILURE', 'REVOKED', 'RETRY'] as const
export type CeleryState = typeof CELERY_STATES[number]
type FinishedState = 'SUCCESS' | 'FAILURE' | 'REVOKED'
type CurrentState = Exclude<CeleryState, FinishedState>

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
  /** Log each queue found by discovery. */
  verbose?: boolean
  /** Least time between two rebuilds of a queue's state when Redis' counts disagree with the tracked ones. */
  rebuildIntervalMs?: number
  /** Told every transition; default: danihodovic/celery-exporter's families on the same store. */
  lifecycle?: JobLifecycle
}

interface Job {
  name: string | undefined
  state: CurrentState | undefined
  /** When the job became runnable (ms since epoch), for the latency; NaN when unknown. */
  since: number
  /** When the current attempt started (ms), for the runtime; NaN when unknown. */
  startedAt: number
  /** The worker holding it (BullMQ's `pb`, its Worker's `name`), read when it turns active. */
  hostname?: string | undefined
}

interface QueueState {
  readonly name: string
  readonly key: string
  readonly eventsKey: string
  /** Last stream entry applied (or the stream's end at the snapshot the state was built from). */
  lastId: string
  jobs: Map<string, Job>
  /** Tracked jobs in a current state (not finished). */
  current: number
  /** Ids in the queue's lists whose job hash is gone, as of the last snapshot. */
  untracked: number
  needsSnapshot: boolean
  lastSnapshot: number
  lengthCell: Cell
}

/** Events that say something about one job; their job may need its name looked up. */
const JOB_EVENTS = new Set(['added', 'waiting', 'delayed', 'waiting-children', 'active', 'completed', 'failed', 'removed', 'stalled'])
/** `removed` from these was a job that had not finished: Celery's REVOKED. */
const UNFINISHED_PREV = new Set(['wait', 'waiting', 'paused', 'prioritized', 'delayed', 'waiting-children', 'active'])
const MAX_SCAN_ROUNDS = 10_000

function entryTime (id: string): number {
  return Number(id.slice(0, id.indexOf('-')))
}

/** Stream ids compare as (milliseconds, sequence). */
export function compareIds (a: string, b: string): number {
  const [am, as] = a.split('-').map(Number) as [number, number]
  const [bm, bs] = b.split('-').map(Number) as [number, number]
  return am !== bm ? am - bm : as - bs
}

function fields (list: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (let i = 0; i + 1 < list.length; i += 2) out[list[i]!] = list[i + 1]!
  return out
}

/**
 * Follows BullMQ queues the way celery-prometheus-exporter follows Celery events: each
 * queue's event stream (`<prefix>:<queue>:events`, what BullMQ's QueueEvents reads) is read
 * with one blocking XREAD over all queues, from the last entry applied, so a reconnect resumes
 * where it stopped and nothing is counted twice. Jobs not finished are tracked by id (name and
 * state only, never data) from a snapshot of the queue's lists taken at start; queue lengths and
 * workers are read at scrape time.
 */
export class WorkerCollector {
  readonly command: Redis
  readonly blocking: Redis
  private readonly queues = new Map<string, QueueState>()
  private readonly discover: boolean
  private readonly discoverIntervalMs: number
  private readonly blockMs: number
  private readonly refreshTimeoutMs: number
  private readonly tasks: Record<CeleryState, Cell>
  private readonly byName = new Map<string, Record<CeleryState, Cell>>()
  private readonly tasksByName: Family
  private readonly workers: Cell
  private readonly latency: HistogramCell
  private readonly runtime: Family<HistogramCell>
  private readonly queueLength: Family
  private running = false
  private initialized = false
  private suspect = false
  private lastDiscovery = 0
  private loop: Promise<void> | undefined
  private refreshing: Promise<void> | undefined
  private wake: (() => void) | undefined
  private blockingReadyAt = 0
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
    this.tasksByName = store.gauge(CELERY.tasksByName, asDeclared)
    this.workers = store.gauge(CELERY.workers, asDeclared).cell()
    this.latency = store.histogram(CELERY.latency, CELERY_BUCKETS, asDeclared).cell()
    this.runtime = store.histogram(CELERY.runtime, CELERY_BUCKETS, asDeclared)
    this.queueLength = store.gauge(CELERY.queueLength, asDeclared)
    this.tasks = Object.fromEntries(CELERY_STATES.map((s) => [s, tasks.cell(s)])) as Record<CeleryState, Cell>
    this.lifecycle = options.lifecycle ?? new CeleryExporterFamilies(store)

    // RESP2, as ioredis 5 speaks: ioredis 6 defaults to RESP3, where a raw XREAD answers a map
    // ([key, entries, …] flattened) instead of [[key, entries], …]. ioredis 5 ignores the option.
    const common = { connectionName: `upstream-metrics-worker:${options.prefix}`, lazyConnect: true, protocol: 2 }
    // Scrape-time reads fail fast while Redis is away (the scrape serves the last values).
    this.command = new options.IORedis(options.broker, { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 1 })
    // The blocking reader waits through outages; ioredis re-sends its pending XREAD on reconnect.
    this.blocking = new options.IORedis(options.broker, { ...common, maxRetriesPerRequest: null })
    this.blocking.on('ready', () => { this.blockingReadyAt = Date.now() })
    for (const client of [this.command, this.blocking]) {
      // After close() a connection still being set up fails on its own: nothing to report (the listener stays, so the error is not unhandled).
      client.on('error', (err: Error) => { if (this.running) this.logOnce('connection', 'warn', err, 'upstream-metrics-worker: Redis connection error; retrying') })
      client.on('close', () => { if (this.initialized && this.running) this.suspect = true })
    }
    if (!this.discover) for (const name of options.queues!) this.track(name)
  }

  /** Starts following; returns at once. The metrics appear when Redis answers (logged as "Connected to broker"). */
  start (): void {
    if (this.running) return
    this.running = true
    this.command.connect().catch(() => {})
    this.blocking.connect().catch(() => {})
    this.loop = this.run()
  }

  async close (): Promise<void> {
    this.running = false
    this.wake?.()
    this.blocking.disconnect()
    this.command.disconnect()
    await this.loop
  }

  /** Reads queue lengths and connected workers; bounded by `refreshTimeoutMs`, never throws. */
  async refresh (): Promise<void> {
    if (!this.initialized || this.command.status !== 'ready') return
    // Settles on its own: a scrape that stopped waiting must not leave a rejection unhandled.
    this.refreshing ??= this.readLengthsAndWorkers()
      .catch((err: unknown) => this.logOnce('refresh', 'warn', err, 'upstream-metrics-worker: reading queue lengths and workers failed; serving the last values'))
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
    // One transaction: the counts and the stream's end are of the same instant.
    const multi = this.command.multi()
    multi.client('LIST')
    for (const q of queues) {
      multi.llen(`${q.key}:wait`).llen(`${q.key}:paused`).zcard(`${q.key}:prioritized`)
        .llen(`${q.key}:active`).zcard(`${q.key}:delayed`).zcard(`${q.key}:waiting-children`)
        .xrevrange(q.eventsKey, '+', '-', 'COUNT', 1)
    }
    const results = await multi.exec()
    if (results === null) return
    for (const [err] of results) if (err !== null) throw err
    const names = new Set<string>()
    for (const q of queues) names.add(`${this.options.prefix}:${Buffer.from(q.name).toString('base64')}`)
    let workers = 0
    const hosts: Array<{ hostname: string | undefined, queue: string }> = []
    // A BullMQ worker names its blocking connection `<prefix>:<base64 queue>`, plus `:w:<name>` when named.
    for (const line of String(results[0]![1]).split('\n')) {
      const match = / name=(\S*)/.exec(line)
      if (match === null || match[1] === '') continue
      const name = match[1]!
      const w = name.indexOf(':w:')
      if (!names.has(w === -1 ? name : name.slice(0, w))) continue
      workers++
      hosts.push({ hostname: w === -1 ? undefined : name.slice(w + 3), queue: Buffer.from(name.slice(this.options.prefix.length + 1, w === -1 ? undefined : w), 'base64').toString() })
    }
    this.workers.value = workers
    const active = this.activeByWorker()
    // A worker name seen twice on a queue gets its active jobs once.
    this.lifecycle.workers(hosts.map((h) => {
      const key = `${h.queue}\u0000${h.hostname ?? ''}`
      const n = active.get(key) ?? 0
      active.delete(key)
      return { ...h, active: n }
    }))
    const now = Date.now()
    queues.forEach((q, i) => {
      const row = results.slice(1 + i * 7, 8 + i * 7).map(([, v]) => v)
      const n = row.slice(0, 6).map(Number)
      q.lengthCell.value = n[0]! + n[1]! + n[2]!
      // Jobs can leave without an event (drain, obliterate, a flushed key). When every event up to
      // this instant has been applied, the tracked count must match; if not, rebuild.
      const end = (row[6] as Array<[string, string[]]>)[0]?.[0] ?? '0-0'
      const unfinished = n.reduce((a, b) => a + b, 0)
      if (end === q.lastId && unfinished !== q.current + q.untracked && now - q.lastSnapshot >= (this.options.rebuildIntervalMs ?? 10_000)) q.needsSnapshot = true
    })
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
      const key = `${this.options.prefix}:${name}`
      q = { name, key, eventsKey: `${key}:events`, lastId: '0-0', jobs: new Map(), current: 0, untracked: 0, needsSnapshot: false, lastSnapshot: 0, lengthCell: this.queueLength.cell(name) }
      this.queues.set(name, q)
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
          for (const q of this.queues.values()) await this.checkContinuity(q)
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
        this.logOnce('loop', 'warn', err, 'upstream-metrics-worker: following the queues failed; retrying')
        await this.sleep(1000)
      }
    }
  }

  private async ready (): Promise<void> {
    if (this.command.status === 'ready') return
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.command.off('ready', done)
        this.wake = undefined
        resolve()
      }
      this.wake = done
      this.command.on('ready', done)
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
    const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}:*:meta`
    let cursor = '0'
    for (let round = 0; round < MAX_SCAN_ROUNDS; round++) {
      const [next, keys] = await this.command.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      for (const key of keys) {
        const name = key.slice(prefix.length + 1, -':meta'.length)
        // BullMQ refuses ':' in queue names; such keys are someone else's.
        if (name === '' || name.includes(':') || this.queues.has(name)) continue
        const q = this.track(name)
        if (this.options.verbose === true) this.options.log.info({ queue: name }, 'upstream-metrics-worker: following a new queue')
        if (this.initialized) {
          // Created after the start (or not seen until now): its jobs since the start are counted.
          q.lastId = this.startId
          await this.snapshot(q, false)
        }
      }
      cursor = next
      if (cursor === '0') break
    }
  }

  /**
   * After a reconnect: resumes if the stream still holds our position. A stream that was
   * recreated (Redis restarted empty) is read from its start; one trimmed past our position, or
   * rewound (restored from an older dump), loses what we did not read: the state is rebuilt.
   */
  private async checkContinuity (q: QueueState): Promise<void> {
    if (q.lastId === '0-0') return
    let info: Record<string, unknown> | undefined
    try {
      const raw = await this.command.call('XINFO', 'STREAM', q.eventsKey) as unknown[]
      info = {}
      for (let i = 0; i + 1 < raw.length; i += 2) info[String(raw[i])] = raw[i + 1]
    } catch (err) {
      if (!/no such key/i.test((err as Error).message)) throw err
    }
    const first = (info?.['first-entry'] as [string, string[]] | null | undefined)?.[0]
    const last = String(info?.['last-generated-id'] ?? '0-0')
    const deleted = info?.['max-deleted-entry-id']
    if (first !== undefined && compareIds(first, q.lastId) <= 0 && compareIds(last, q.lastId) >= 0) return
    if (info === undefined || (deleted === '0-0' && compareIds(last, q.lastId) > 0)) {
      this.options.log.warn({ queue: q.name }, 'upstream-metrics-worker: the event stream was recreated (Redis restarted empty?); reading it from its start')
      q.lastId = '0-0'
      await this.snapshot(q, false)
      return
    }
    this.options.log.warn({ queue: q.name }, 'upstream-metrics-worker: events were lost while disconnected (stream trimmed or restored); rebuilding the current states')
    await this.snapshot(q, true)
  }

  /**
   * Current states from the queue's lists, read in one transaction with the stream's last entry.
   * With `jumpToEnd` reading resumes after that entry; without, from the last entry applied, and
   * the events in between are replayed onto the snapshot: states are set, not added, so a replayed
   * transition is harmless, and a job that finished in between is counted once, by its event.
   */
  private async snapshot (q: QueueState, jumpToEnd: boolean): Promise<void> {
    // One transaction: the lists are exactly the state after the stream's last entry.
    const lists = await this.command.multi()
      .xrevrange(q.eventsKey, '+', '-', 'COUNT', 1)
      .lrange(`${q.key}:wait`, 0, -1)
      .lrange(`${q.key}:paused`, 0, -1)
      .zrange(`${q.key}:prioritized`, 0, -1)
      .zrange(`${q.key}:waiting-children`, 0, -1)
      .zrange(`${q.key}:delayed`, 0, -1)
      .lrange(`${q.key}:active`, 0, -1)
      .exec()
    if (lists === null) throw new Error('snapshot transaction discarded')
    const last = lists.shift()![1] as Array<[string, string[]]>
    const lastId = last.length === 0 ? '0-0' : last[0]![0]
    const ids: Array<[string, 'waiting' | 'delayed' | 'active' | 'children']> = []
    lists.forEach(([err, value], i) => {
      if (err !== null) throw err
      const kind = i < 3 ? 'waiting' : i === 3 ? 'children' : i === 4 ? 'delayed' : 'active'
      for (const id of value as string[]) ids.push([id, kind])
    })
    const jobs = new Map<string, Job>()
    let untracked = 0
    const BATCH = 1000
    for (let start = 0; start < ids.length; start += BATCH) {
      const pipeline = this.command.pipeline()
      const batch = ids.slice(start, start + BATCH)
      for (const [id] of batch) pipeline.hmget(`${q.key}:${id}`, 'name', 'timestamp', 'delay', 'processedOn', 'atm', 'pb')
      const rows = await pipeline.exec()
      if (rows === null) throw new Error('snapshot pipeline discarded')
      batch.forEach(([id, kind], i) => {
        const [err, row] = rows[i]!
        if (err !== null) throw err
        const [name, timestamp, delay, processedOn, atm, pb] = row as Array<string | null>
        if (name === null) {
          untracked++
          return
        }
        const retried = Number(atm ?? 0) > 0
        const added = Number(timestamp)
        const job: Job = { name, state: undefined, since: NaN, startedAt: NaN, hostname: pb ?? undefined }
        if (kind === 'active') {
          job.state = 'STARTED'
          job.startedAt = Number(processedOn ?? NaN)
        } else if (kind === 'delayed') {
          job.state = retried ? 'RETRY' : 'RECEIVED'
          job.since = added + Number(delay ?? 0)
        } else {
          job.state = retried ? 'RETRY' : 'PENDING'
          job.since = kind === 'children' ? NaN : added
        }
        jobs.set(id, job)
      })
    }
    for (const job of q.jobs.values()) this.setState(q, job, undefined)
    for (const job of jobs.values()) {
      const state = job.state
      job.state = undefined
      this.setState(q, job, state)
    }
    q.jobs = jobs
    q.untracked = untracked
    q.lastSnapshot = Date.now()
    if (jumpToEnd) q.lastId = lastId
  }

  private async readEvents (): Promise<void> {
    if (this.blocking.status === 'end') {
      this.blocking.connect().catch(() => {})
    }
    const queues = [...this.queues.values()]
    if (queues.length === 0) {
      await this.sleep(Math.min(this.blockMs, this.discoverIntervalMs))
      return
    }
    const read = this.blocking.call(
      'XREAD', 'COUNT', '1000', 'BLOCK', String(this.blockMs), 'STREAMS',
      ...queues.map((q) => q.eventsKey), ...queues.map((q) => q.lastId)
    ) as Promise<Array<[string, Array<[string, string[]]>]> | null>
    read.catch(() => {})
    const reply = await this.watch(read)
    // After a reconnect the state is checked before anything read is applied.
    if (reply === null || this.suspect || !this.running) return
    const byKey = new Map(queues.map((q) => [q.eventsKey, q]))
    for (const [key, entries] of reply) {
      const q = byKey.get(key)
      if (q !== undefined) await this.apply(q, entries)
    }
  }

  /**
   * ioredis re-sends a blocking read interrupted by a reconnect; BullMQ found such a read can
   * stay unanswered for good (its issue #4479). Past its BLOCK time on a connection that has been
   * up all along, the connection is reset, which fails the read and lets the loop issue a new one.
   */
  private async watch<T> (read: Promise<T>): Promise<T | null> {
    const margin = 2000
    for (;;) {
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), this.blockMs + margin) })
      try {
        const result = await Promise.race([read, late])
        if (result !== 'late') return result
      } finally {
        clearTimeout(timer)
      }
      if (!this.running) return null
      if (this.blocking.status === 'ready' && Date.now() - this.blockingReadyAt > this.blockMs + margin) {
        this.logOnce('stuck', 'warn', undefined, 'upstream-metrics-worker: a blocking read went unanswered; reconnecting')
        // A plain disconnect fails the pending read (a reconnecting one would re-send it again);
        // the loop connects it again once it has ended.
        this.blocking.disconnect()
        return null
      }
    }
  }

  private async apply (q: QueueState, entries: Array<[string, string[]]>): Promise<void> {
    const parsed = entries.map(([id, list]) => [id, fields(list)] as const)
    // Names of jobs first seen here (added before the exporter looked), fetched before applying anything.
    const unknown = new Set<string>()
    for (const [, f] of parsed) {
      if (f.jobId !== undefined && f.event !== 'added' && JOB_EVENTS.has(f.event ?? '') && !q.jobs.has(f.jobId)) unknown.add(f.jobId)
    }
    const names = new Map<string, string | null>()
    // The celery-exporter families' hostname (the worker's name) and exception (the error's class, atop its stack).
    const detailed = parsed.filter(([, f]) => f.jobId !== undefined && (f.event === 'active' || f.event === 'failed'))
    const details = new Map<string, string | null>()
    if (unknown.size > 0 || detailed.length > 0) {
      const pipeline = this.command.pipeline()
      for (const id of unknown) pipeline.hget(`${q.key}:${id}`, 'name')
      for (const [, f] of detailed) pipeline.hget(`${q.key}:${f.jobId!}`, f.event === 'active' ? 'pb' : 'stacktrace')
      const rows = await pipeline.exec()
      if (rows === null) throw new Error('name pipeline discarded')
      for (const [err] of rows) if (err !== null) throw err;
      [...unknown].forEach((id, i) => names.set(id, rows[i]![1] as string | null))
      detailed.forEach(([id], i) => details.set(id, rows[unknown.size + i]![1] as string | null))
    }
    for (const [i, [id, f]] of parsed.entries()) {
      q.lastId = id
      // A stalled job is put back to wait (`waiting` from `active`) then `stalled`: BullMQ's requeue, not a failed attempt.
      if (f.event === 'waiting' && f.prev === 'active' && parsed[i + 1]?.[1].event === 'stalled' && parsed[i + 1]?.[1].jobId === f.jobId) f.prev = 'stalled'
      // `clean` removes jobs without an event per job.
      if (f.event === 'cleaned') q.needsSnapshot = true
      const jobId = f.jobId
      if (jobId === undefined || !JOB_EVENTS.has(f.event ?? '')) continue
      let job = q.jobs.get(jobId)
      if (job === undefined) {
        job = { name: f.event === 'added' ? f.name : (names.get(jobId) ?? undefined), state: undefined, since: NaN, startedAt: NaN }
        q.jobs.set(jobId, job)
      }
      this.transition(q, jobId, job, f, entryTime(id), details.get(id) ?? undefined)
    }
  }

  /** `detail`: the worker's name on `active`, the stored stack trace on `failed`. */
  private transition (q: QueueState, jobId: string, job: Job, f: Record<string, string>, t: number, detail: string | undefined): void {
    const labels: JobLabels = { name: job.name, queue: q.name, hostname: f.event === 'active' ? detail : job.hostname }
    switch (f.event) {
      case 'added':
        if (job.name === undefined && f.name !== undefined) job.name = f.name
        if (job.name !== undefined) this.nameCells(job.name)
        this.lifecycle.sent({ ...labels, name: job.name })
        break
      case 'stalled':
        this.lifecycle.rejected(labels)
        break
      case 'waiting':
        // `stalled`: set by apply() for a stall's requeue, RETRY here but rejected, not retried, for celery-exporter.
        if (f.prev === 'active' || f.prev === 'stalled') {
          if (f.prev === 'active') this.lifecycle.retried(labels)
          this.setState(q, job, 'RETRY')
        } else if (f.prev === 'delayed') {
          if (job.state !== 'RETRY') {
            if (Number.isNaN(job.since)) job.since = t
            this.setState(q, job, 'PENDING')
          }
        } else {
          job.since = t
          this.setState(q, job, 'PENDING')
        }
        break
      case 'delayed':
        if (job.state === 'STARTED' || job.state === 'RETRY') {
          if (job.state === 'STARTED') this.lifecycle.retried(labels)
          this.setState(q, job, 'RETRY')
        } else {
          job.since = Number(f.delay)
          this.setState(q, job, 'RECEIVED')
        }
        break
      case 'waiting-children':
        job.since = NaN
        this.setState(q, job, 'PENDING')
        break
      case 'active':
        job.hostname = detail
        // As celery-prometheus-exporter: no latency for a retry.
        if ((job.state === 'PENDING' || job.state === 'RECEIVED') && Number.isFinite(job.since)) {
          observe(this.latency, CELERY_BUCKETS, Math.max(0, t - job.since) / 1000)
          this.lifecycle.started(labels, Math.max(0, t - job.since) / 1000)
        } else this.lifecycle.started(labels, undefined)
        job.startedAt = t
        this.setState(q, job, 'STARTED')
        break
      case 'completed':
        if (job.name !== undefined && Number.isFinite(job.startedAt)) {
          observe(this.runtime.cell(job.name), CELERY_BUCKETS, Math.max(0, t - job.startedAt) / 1000)
        }
        this.lifecycle.succeeded(labels, Number.isFinite(job.startedAt) ? Math.max(0, t - job.startedAt) / 1000 : undefined)
        this.finish(q, jobId, job, 'SUCCESS')
        break
      case 'failed':
        this.lifecycle.failed(labels, detail)
        this.finish(q, jobId, job, 'FAILURE')
        break
      case 'removed':
        if (UNFINISHED_PREV.has(f.prev ?? '')) {
          this.lifecycle.revoked(labels)
          this.finish(q, jobId, job, 'REVOKED')
        } else {
          this.setState(q, job, undefined)
          q.jobs.delete(jobId)
        }
        break
    }
  }

  private nameCells (name: string): Record<CeleryState, Cell> {
    let cells = this.byName.get(name)
    if (cells === undefined) {
      // As the Celery exporter's setup: every state of a known task name is exposed, at 0 until used.
      cells = Object.fromEntries(CELERY_STATES.map((s) => [s, this.tasksByName.cell(s, name)])) as Record<CeleryState, Cell>
      this.byName.set(name, cells)
    }
    return cells
  }

  private setState (q: QueueState, job: Job, state: CurrentState | undefined): void {
    if (job.state === state) return
    if (job.state !== undefined) {
      q.current--
      this.tasks[job.state].value--
      if (job.name !== undefined) this.nameCells(job.name)[job.state].value--
    }
    job.state = state
    if (state !== undefined) {
      q.current++
      this.tasks[state].value++
      if (job.name !== undefined) this.nameCells(job.name)[state].value++
    }
  }

  private finish (q: QueueState, jobId: string, job: Job, state: FinishedState): void {
    this.setState(q, job, undefined)
    this.tasks[state].value++
    if (job.name !== undefined) this.nameCells(job.name)[state].value++
    q.jobs.delete(jobId)
  }

  private logOnce (kind: string, level: 'warn' | 'error', err: unknown, msg: string): void {
    if (this.logLimiter.admit(kind) === false) return
    try {
      this.options.log[level]({ err }, msg)
    } catch {}
  }
}
