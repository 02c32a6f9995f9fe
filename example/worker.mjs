// The demo's background worker: a BullMQ worker on the `default` queue, and (DEMO_JOBS, on by
// default) a producer adding two jobs a second, some of which fail or retry, so the
// dashboard's Workers row and the worker alerts have something to show.
//   REDIS_URL     Redis of the queues (default redis://127.0.0.1:6379/0)
//   BULL_PREFIX   BullMQ key prefix (default bull)
//   DEMO_JOBS     "0" to only process, not produce
//   DEMO_JOBS_PER_SECOND   how many jobs the producer adds (default 2)
//   DEMO_JOB_FAILURE_RATE  share of report jobs whose every attempt fails (default 0.05)
import { Queue, Worker } from 'bullmq'
import IORedis from 'ioredis'

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0'
const prefix = process.env.BULL_PREFIX ?? 'bull'
const failureRate = Number(process.env.DEMO_JOB_FAILURE_RATE ?? 0.05)
const QUEUE = 'default'

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
// BullMQ's workers need maxRetriesPerRequest: null on their connections.
const connection = new IORedis(url, { maxRetriesPerRequest: null })

const worker = new Worker(QUEUE, async (job) => {
  switch (job.name) {
    case 'send_reminder':
      await sleep(20 + Math.random() * 80)
      return 'sent'
    case 'generate_report':
      await sleep(200 + Math.random() * 800)
      if (job.data.failing === true) throw new Error('report source unavailable')
      // A first attempt fails now and then; the retry succeeds.
      if (job.attemptsMade === 0 && Math.random() < 0.1) throw new Error('transient')
      return 'generated'
    default:
      throw new Error(`unknown job ${job.name}`)
  }
}, { connection, prefix, name: process.env.HOSTNAME ?? 'demo', concurrency: 4 })
worker.on('error', (err) => console.error('worker error:', err.message))

let producer
let timer
if (process.env.DEMO_JOBS !== '0') {
  producer = new Queue(QUEUE, { connection, prefix })
  const options = { removeOnComplete: 1000, removeOnFail: 1000 }
  timer = setInterval(() => {
    const add = Math.random() < 0.7
      ? producer.add('send_reminder', { batch: 'demo' }, options)
      : producer.add('generate_report', { failing: Math.random() < failureRate }, { ...options, attempts: 2, backoff: { type: 'fixed', delay: 1000 } })
    add.catch((err) => console.error('enqueue failed:', err.message))
  }, 1000 / Math.max(0.1, Number(process.env.DEMO_JOBS_PER_SECOND ?? 2)))
}

async function stop () {
  clearInterval(timer)
  await worker.close()
  await producer?.close()
  connection.disconnect()
  process.exit(0)
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
console.log(`demo worker on queue "${QUEUE}" (prefix ${prefix})${producer === undefined ? '' : ', producing demo jobs'}`)
