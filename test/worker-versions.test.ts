import t from 'tap'
import type * as BullMQ from 'bullmq'
import { REDIS_URL, byName, connection, dropPrefix, key, startCollector, tasks, uniquePrefix, until } from './fixtures/worker-harness'

/**
 * The declared BullMQ range (package.json's peer `bullmq`) at its oldest, a 5.x before the retry
 * event changed (5.58.6 writes `prev: active` where earlier ones wrote `prev: failed`) and the newest
 * (the devDependency): the same known mix of jobs gives the same numbers on each.
 */
const VERSIONS: Array<[string, () => typeof BullMQ]> = [
  ['4.18.3 (oldest supported)', () => require('bullmq-4') as typeof BullMQ],
  ['5.58.5 (a 5.x before 5.58.6)', () => require('bullmq-5-58') as typeof BullMQ],
  [`${(require('bullmq/package.json') as { version: string }).version} (newest)`, () => require('bullmq') as typeof BullMQ]
]

/** A celery-exporter counter summed over its other labels, for one job name. */
function counter (s: Map<string, number>, name: string, job: string): number {
  let sum = 0
  for (const [k, v] of s) if (k.startsWith(`${name}{`) && k.includes(`name="${job}"`)) sum += v
  return sum
}

for (const [version, load] of VERSIONS) {
  t.test(`bullmq ${version}: exact celery values for a known mix, and after an exporter restart`, async (t) => {
    const { Queue, Worker } = load()
    const prefix = uniquePrefix('ver')
    let c = await startCollector({ broker: REDIS_URL, queues: ['v'], prefix, blockMs: 200 })
    const queue = new Queue('v', { connection, prefix })
    const workers: BullMQ.Worker[] = []
    t.teardown(async () => {
      await Promise.all(workers.map(async (w) => await w.close(true)))
      await queue.close()
      await c.close()
      await dropPrefix(prefix)
    })
    await until(async () => c.logs, (l) => l.some((m) => m.includes('Connected to broker')), 'the collector to connect')

    // A delayed job in an empty queue: BullMQ 4 puts a marker in the wait list, which is no job.
    await queue.add('later', {}, { delay: 600_000 })
    const a = await until(c.metrics, (s) => tasks(s).RECEIVED === 1, 'the delayed job')
    t.equal(a.get(key('celery_queue_length', { queue_name: 'v' })), 0, 'no job waits')
    await queue.add('send', {})
    await queue.add('send', {})
    const gone = await queue.add('gone', {}, { delay: 600_000 })
    await gone.remove()
    const b = await until(c.metrics, (s) => tasks(s).PENDING === 2 && tasks(s).REVOKED === 1, 'waiting and removed jobs')
    t.same(tasks(b), { PENDING: 2, RECEIVED: 1, STARTED: 0, SUCCESS: 0, FAILURE: 0, REVOKED: 1, RETRY: 0 })
    t.equal(b.get(key('celery_queue_length', { queue_name: 'v' })), 2, 'two jobs wait')

    await queue.add('boom', {})
    await queue.add('quick', {}, { attempts: 2 })
    await queue.add('flaky', {}, { attempts: 2, backoff: { type: 'fixed', delay: 600_000 } })
    // Runs are counted here: `attemptsMade` during a run is 0 on BullMQ 5 and 1 on BullMQ 4.
    const ran = new Set<string>()
    workers.push(new Worker('v', async (job) => {
      if (job.name === 'boom') throw new Error('boom')
      const first = !ran.has(job.id!)
      ran.add(job.id!)
      if ((job.name === 'quick' || job.name === 'flaky') && first) throw new Error('first attempt fails')
      return 'ok'
    }, { connection, prefix }))
    const s = await until(c.metrics, (s) => tasks(s).SUCCESS === 3 && tasks(s).FAILURE === 1 && tasks(s).RETRY === 1, 'the worker')
    t.same(tasks(s), { PENDING: 0, RECEIVED: 1, STARTED: 0, SUCCESS: 3, FAILURE: 1, REVOKED: 1, RETRY: 1 })
    t.same(byName(s, 'quick'), { PENDING: 0, RECEIVED: 0, STARTED: 0, SUCCESS: 1, FAILURE: 0, REVOKED: 0, RETRY: 0 })
    t.same(byName(s, 'flaky'), { PENDING: 0, RECEIVED: 0, STARTED: 0, SUCCESS: 0, FAILURE: 0, REVOKED: 0, RETRY: 1 })
    t.equal(s.get('celery_task_latency_count'), 5, 'first starts only: send ×2, boom, quick, flaky')
    t.equal(counter(s, 'celery_task_retried_total', 'quick'), 1, 'the immediate retry is a retry')
    t.equal(counter(s, 'celery_task_retried_total', 'flaky'), 1, 'the retry with backoff too')
    t.equal(s.get(key('celery_task_runtime_seconds_count', { name: 'quick' })), 1, 'one runtime for the attempt that succeeded')

    // A new exporter finds the job waiting for its retry (BullMQ 4 counts attempts in `attemptsMade`, 5 in `atm`).
    await c.close()
    c = await startCollector({ broker: REDIS_URL, queues: ['v'], prefix, blockMs: 200 })
    const r = await until(c.metrics, (s) => tasks(s).RETRY === 1, 'the restarted exporter')
    t.same(tasks(r), { PENDING: 0, RECEIVED: 1, STARTED: 0, SUCCESS: 0, FAILURE: 0, REVOKED: 0, RETRY: 1 })
    t.equal(r.get(key('celery_queue_length', { queue_name: 'v' })), 0)
  })
}
