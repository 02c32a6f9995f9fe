import { CELERY, CELERY_BUCKETS, WORKER } from '../names'
import type { Cell, Store } from '../store'
import type { IORedisClass } from './ioredis'
import { LogLimiter } from '../log-limit'
import type { JobLifecycle } from './lifecycle'
import { CeleryExporterFamilies } from './celery-exporter'
import { CELERY_STATES, type CeleryState } from './celery-states'
import { BrokerConnections } from './connections'
import { EventApplier } from './event-applier'
import { JobRecorder } from './job-recorder'
import { LengthsAndWorkers } from './lengths-and-workers'
import { TrackedQueues } from './queues'
import { QueueSnapshots } from './snapshot'
import { StreamFollower } from './stream-follower'
import { TaskNames } from './task-names'
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

const READ_COUNT = 1000
/** Entries gather this long after a wake, at most that much later counted: a steady flow read every few entries cost a fifth more CPU per job (bench/worker.mjs). */
const GATHER_MS = 10
/** How long close() waits for the connections to end: a half-open one may never see its end. */
const CLOSE_WAIT_MS = 2000

/**
 * Follows BullMQ queues the way celery-prometheus-exporter follows Celery events: each queue's
 * event stream is read from the last entry applied (stream-follower.ts), so a reconnect resumes
 * where it stopped, nothing is counted twice, and events trimmed unread are counted as lost.
 * This class runs the loop; the parts are one a file: the Redis connections and their watchdog
 * (connections.ts), the queues followed and their discovery (queues.ts), events applied to the
 * tracked jobs (event-applier.ts) and counted (job-recorder.ts), snapshots of the queue's lists and
 * gap recovery (snapshot.ts), the lengths and workers read at scrape time (lengths-and-workers.ts).
 * BullMQ's layout is in bullmq-layout.ts, its events as Celery states in celery-states.ts.
 */
export class WorkerCollector {
  private readonly connections: BrokerConnections
  private readonly queues: TrackedQueues
  private readonly discover: boolean
  private readonly discoverIntervalMs: number
  private readonly blockMs: number
  private readonly refreshTimeoutMs: number
  private readonly follower: StreamFollower
  private readonly snapshots: QueueSnapshots
  private readonly applier: EventApplier
  private readonly lengthsAndWorkers: LengthsAndWorkers
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

  constructor (store: Store, private readonly options: WorkerCollectorOptions) {
    this.discover = options.queues === undefined || options.queues.length === 0
    this.discoverIntervalMs = options.discoverIntervalMs ?? 30_000
    // Discovery runs between reads, so a read never blocks past the next one.
    this.blockMs = Math.max(1, Math.min(options.blockMs ?? 5000, this.discover ? this.discoverIntervalMs : Infinity))
    this.refreshTimeoutMs = options.refreshTimeoutMs ?? 2000

    // Not namespaced: dashboards query the Celery exporter's own names. Declared in this order, as they are shown.
    const asDeclared = { namespaced: false }
    const tasks = store.gauge(CELERY.tasks, asDeclared)
    const names = new TaskNames(store.gauge(CELERY.tasksByName, asDeclared), store.histogram(CELERY.runtime, CELERY_BUCKETS, asDeclared))
    const workers = store.gauge(CELERY.workers, asDeclared).cell()
    const latency = store.histogram(CELERY.latency, CELERY_BUCKETS, asDeclared).cell()
    const queueLength = store.gauge(CELERY.queueLength, asDeclared)
    const eventsLost = store.counter(WORKER.eventsLost, asDeclared)
    const taskCells = Object.fromEntries(CELERY_STATES.map((s) => [s, tasks.cell(s)])) as Record<CeleryState, Cell>
    const lifecycle = options.lifecycle ?? new CeleryExporterFamilies(store)
    const recorder = new JobRecorder(taskCells, names, latency, lifecycle)
    const warn = (kind: string, err: unknown, msg: string): void => { this.logOnce(kind, err, msg) }

    this.connections = new BrokerConnections(options, {
      warn,
      closed: () => { if (this.initialized) this.suspect = true },
      replaced: () => { this.suspect = true }
    })
    const command = (): BrokerConnections['command'] => this.connections.command
    this.follower = new StreamFollower(command, this.connections.blocking, { blockMs: this.blockMs, count: READ_COUNT, gatherMs: GATHER_MS }, () => {
      warn('stuck', undefined, 'upstream-metrics-worker: a blocking read went unanswered; reconnecting')
    })
    this.queues = new TrackedQueues(options.prefix, queueLength, eventsLost)
    this.snapshots = new QueueSnapshots(command, recorder, eventsLost, warn)
    this.applier = new EventApplier(command, recorder, this.snapshots, this.follower, warn)
    this.lengthsAndWorkers = new LengthsAndWorkers(command, options.prefix, workers, lifecycle, this.follower, options.rebuildIntervalMs ?? 10_000)
    if (!this.discover) for (const name of options.queues!) this.queues.track(name)
  }

  /** Starts following; returns at once. The metrics appear when Redis answers (logged as "Connected to broker"). */
  start (): void {
    if (this.running) return
    this.running = true
    this.connections.connect()
    this.loop = this.run()
  }

  /** Resolves once both connections have ended: nothing is logged after. */
  async close (): Promise<void> {
    this.running = false
    this.wake?.()
    const ended = this.connections.disconnect()
    await this.loop
    await waitAtMost(ended, CLOSE_WAIT_MS)
  }

  /** Reads queue lengths and connected workers; bounded by `refreshTimeoutMs`, never throws. */
  async refresh (): Promise<void> {
    if (!this.initialized || this.connections.command.status !== 'ready') return
    // Settles on its own: a scrape that stopped waiting must not leave a rejection unhandled.
    this.refreshing ??= this.lengthsAndWorkers.read([...this.queues.values()])
      .then((stale) => { if (stale) this.wake?.() })
      .catch((err: unknown) => {
        this.connections.replaceIfHung(err)
        this.logOnce('refresh', err, 'upstream-metrics-worker: reading queue lengths and workers failed; serving the last values')
      })
      .finally(() => { this.refreshing = undefined })
    await waitAtMost(this.refreshing, this.refreshTimeoutMs)
  }

  private async run (): Promise<void> {
    while (this.running) {
      try {
        if (!this.initialized) {
          await this.ready()
          const [seconds, micros] = await this.connections.command.time()
          this.startId = `${Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)}-0`
          if (this.discover) await this.discoverQueues()
          for (const q of this.queues.values()) await this.snapshots.take(q, true)
          this.initialized = true
          this.options.log.info({ queues: this.queues.names() }, 'upstream-metrics-worker: Connected to broker')
        } else if (this.suspect) {
          await this.ready()
          this.suspect = false
          // Whatever happened while away is seen by the next read's continuity check.
          for (const q of this.queues.values()) this.follower.check(q.stream)
          this.options.log.info({ queues: this.queues.names() }, 'upstream-metrics-worker: Connected to broker')
        } else if (this.discover && Date.now() - this.lastDiscovery >= this.discoverIntervalMs) {
          await this.discoverQueues()
        }
        for (const q of this.queues.values()) {
          if (!q.needsSnapshot) continue
          q.needsSnapshot = false
          await this.snapshots.take(q, false)
        }
        await this.readEvents()
      } catch (err) {
        if (!this.running) break
        this.connections.replaceIfHung(err)
        this.logOnce('loop', err, 'upstream-metrics-worker: following the queues failed; retrying')
        await this.sleep(1000)
      }
    }
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
      if (q !== undefined) await this.applier.applyRead(q, read, this.startId)
    }
  }

  private async discoverQueues (): Promise<void> {
    this.lastDiscovery = Date.now()
    await this.queues.discover(() => this.connections.command, async (q) => {
      if (this.options.verbose === true) this.options.log.info({ queue: q.name }, 'upstream-metrics-worker: following a new queue')
      if (!this.initialized) return
      // Created after the start (or not seen until now): its jobs since the start are counted.
      q.stream.lastId = this.startId
      await this.snapshots.take(q, false)
      this.follower.check(q.stream)
    })
  }

  private async ready (): Promise<void> {
    if (this.connections.command.status === 'ready') return
    await new Promise<void>((resolve) => {
      const command = this.connections.command
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

  private logOnce (kind: string, err: unknown, msg: string): void {
    if (this.logLimiter.admit(kind) === false) return
    try {
      this.options.log.warn(err === undefined ? {} : { err: safeError(err, this.options.broker) }, msg)
    } catch {}
  }
}

/** Waits for `work` (which never rejects), or `ms`, whichever comes first. */
async function waitAtMost (work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([work, new Promise<void>((resolve) => { timer = setTimeout(resolve, ms) })])
  } finally {
    clearTimeout(timer)
  }
}
