// The demo's background worker: a BullMQ worker on the `default` queue, and (DEMO_JOBS, on by
// default) a producer adding two jobs a second, some of which fail or retry, a few reminders
// scheduled then cancelled, and now and then a feed import that outlives its lock on an importer
// that does not renew it (BullMQ hands it back: a stalled job), so the dashboard's Workers row,
// the celery-mixin dashboards and the worker alerts have every state to show.
// `npm start` runs it inside the demo service when Redis is reachable; compose runs it alone:
//   node example/worker.mjs
//   REDIS_URL     Redis of the queues (default redis://127.0.0.1:6379/0)
//   BULL_PREFIX   BullMQ key prefix (default bull)
//   DEMO_JOBS     "0" to only process, not produce
//   DEMO_JOBS_PER_SECOND   how many jobs the producer adds (default 2)
//   DEMO_JOB_FAILURE_RATE  share of report jobs whose every attempt fails (default 0.05)
import { fileURLToPath } from 'node:url'
import { hostname } from 'node:os'
import { Queue, Worker } from 'bullmq'
import { LOCAL_REDIS_URL, rateLimited, redisClient } from './redis.mjs'

export const DEMO_QUEUE = 'default'
/** Feed imports, on an importer of their own. */
export const IMPORT_QUEUE = 'imports'
export const DEMO_QUEUES = [DEMO_QUEUE, IMPORT_QUEUE]

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
/** The importer's lock lasts less than a cold import, and it does not renew it: cold imports stall. */
const IMPORTER_LOCK_MS = 1500
const COLD_IMPORT_MS = 4000

/** A failure with a class of its own: the `exception` label of celery_task_failed_total. */
class ReportSourceUnavailable extends Error {
  name = 'ReportSourceUnavailable'
}

async function processJob (job) {
  switch (job.name) {
    case 'import_feed':
      // Cold, the feed takes longer than the importer's lock; handed back after the stall, it is warm.
      await sleep(job.stalledCounter > 0 ? 50 : COLD_IMPORT_MS)
      return 'imported'
    case 'send_reminder':
      await sleep(20 + Math.random() * 80)
      return 'sent'
    case 'generate_report':
      await sleep(200 + Math.random() * 800)
      if (job.data.failing === true) throw new ReportSourceUnavailable('report source unavailable')
      // A first attempt fails now and then; the retry succeeds.
      if (job.attemptsMade === 0 && Math.random() < 0.1) throw new Error('transient')
      return 'generated'
    default:
      throw new Error(`unknown job ${job.name}`)
  }
}

/**
 * Starts the worker (and the producer unless `produce` is false).
 * `log` gets the connection errors: give it a `rateLimited` one.
 * @param {{ url: string, prefix?: string, produce?: boolean, jobsPerSecond?: number, failureRate?: number, log: (message: string) => void }} options
 * @returns {{ close: () => Promise<void>, producing: boolean }}
 */
export function startDemoWorker ({ url, prefix = 'bull', produce = true, jobsPerSecond = 2, failureRate = 0.05, log }) {
  // BullMQ's workers need maxRetriesPerRequest: null on their connections.
  const connection = redisClient(url, { maxRetriesPerRequest: null }, log)
  const worker = new Worker(DEMO_QUEUE, processJob, { connection, prefix, name: process.env.HOSTNAME ?? hostname(), concurrency: 4 })
  worker.on('error', (err) => log(`demo worker: ${err.message}`))
  // As a worker process that hangs would: BullMQ's stalled-job check hands its job back to the queue.
  const importer = new Worker(IMPORT_QUEUE, processJob, {
    connection, prefix, name: `importer@${process.env.HOSTNAME ?? hostname()}`, skipLockRenewal: true, lockDuration: IMPORTER_LOCK_MS, stalledInterval: IMPORTER_LOCK_MS, maxStalledCount: 2
  })
  // Its jobs' lost locks are the point; anything else is worth a line.
  importer.on('error', (err) => { if (!/lock/i.test(err.message)) log(`demo worker: ${err.message}`) })

  let producer
  let imports
  let timer
  if (produce) {
    producer = new Queue(DEMO_QUEUE, { connection, prefix })
    imports = new Queue(IMPORT_QUEUE, { connection, prefix })
    for (const queue of [producer, imports]) queue.on('error', () => {}) // the shared connection's errors are logged above
    const options = { removeOnComplete: 1000, removeOnFail: 1000 }
    timer = setInterval(() => {
      const r = Math.random()
      const add = r < 0.62
        ? producer.add('send_reminder', { batch: 'demo' }, options)
        : r < 0.66
          // A reminder scheduled for later, then cancelled (removed before it ran: revoked).
          ? producer.add('send_reminder', { batch: 'cancelled' }, { ...options, delay: 60_000 }).then((job) => sleep(500).then(() => job.remove()))
          : r < 0.68
            ? imports.add('import_feed', { feed: 'demo' }, options)
            : producer.add('generate_report', { failing: Math.random() < failureRate }, { ...options, attempts: 2, backoff: { type: 'fixed', delay: 1000 } })
      add.catch(() => {}) // Redis away: the connection's error is logged, the job is just not added
    }, 1000 / Math.max(0.1, jobsPerSecond))
  }

  return {
    producing: producer !== undefined,
    async close () {
      clearInterval(timer)
      // Waits for the running jobs, unless Redis is away (a graceful close would wait for it forever).
      await Promise.all([worker.close(connection.status !== 'ready'), importer.close(true)])
      await producer?.close()
      await imports?.close()
      connection.disconnect()
    }
  }
}

async function main () {
  const prefix = process.env.BULL_PREFIX ?? 'bull'
  const demo = startDemoWorker({
    url: process.env.REDIS_URL || LOCAL_REDIS_URL,
    prefix,
    produce: process.env.DEMO_JOBS !== '0',
    jobsPerSecond: Number(process.env.DEMO_JOBS_PER_SECOND ?? 2),
    failureRate: Number(process.env.DEMO_JOB_FAILURE_RATE ?? 0.05),
    log: rateLimited((message) => console.error(message))
  })
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.once(signal, () => demo.close().then(() => process.exit(0), () => process.exit(1)))
  }
  console.log(`demo worker on queues ${DEMO_QUEUES.map((q) => `"${q}"`).join(', ')} (prefix ${prefix})${demo.producing ? ', producing demo jobs' : ''}`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main()
