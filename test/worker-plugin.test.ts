import t from 'tap'
import Fastify from 'fastify'
import { Queue, Worker } from 'bullmq'
import IORedis from 'ioredis'
import upstreamMetrics from '../lib/index'
import { REDIS_URL, byName, connection, dropPrefix, key, parse, tasks, uniquePrefix, until } from './fixtures/worker-harness'

t.test('the worker option runs the same collector inside the app; close releases its connections', async (t) => {
  const prefix = uniquePrefix('app')
  let logs = ''
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => { logs += line } } } })
  await app.register(upstreamMetrics, { runtimeMetrics: false, namespace: 'upstream', worker: { broker: REDIS_URL, queues: ['jobs'], prefix } })
  const queue = new Queue('jobs', { connection, prefix })
  const worker = new Worker('jobs', async (job) => {
    if (job.name === 'boom') throw new Error('boom')
    return 'ok'
  }, { connection, prefix, autorun: false })
  const admin = new IORedis(REDIS_URL)
  let closed = false
  t.teardown(async () => {
    await worker.close(true)
    await queue.close()
    if (!closed) await app.close()
    admin.disconnect()
    await dropPrefix(prefix)
  })
  await until(async () => logs, (l) => l.includes('Connected to broker'), 'the collector to connect')

  const scrape = async (): Promise<Map<string, number>> => parse((await app.inject('/metrics')).body)
  await queue.add('send', { email: 'someone@example.org' })
  await queue.add('send', {})
  await queue.add('boom', {})
  await queue.add('later', {}, { delay: 600_000 })
  const waiting = await until(scrape, (s) => tasks(s).RECEIVED === 1, 'jobs to be seen')
  t.same(tasks(waiting), { PENDING: 3, RECEIVED: 1, STARTED: 0, SUCCESS: 0, FAILURE: 0, REVOKED: 0, RETRY: 0 })
  t.equal(waiting.get(key('celery_queue_length', { queue_name: 'jobs' })), 3)

  worker.run().catch(() => {})
  const s = await until(scrape, (s) => tasks(s).SUCCESS === 2 && tasks(s).FAILURE === 1, 'jobs to finish')
  t.same(tasks(s), { PENDING: 0, RECEIVED: 1, STARTED: 0, SUCCESS: 2, FAILURE: 1, REVOKED: 0, RETRY: 0 })
  t.same(byName(s, 'send'), { PENDING: 0, RECEIVED: 0, STARTED: 0, SUCCESS: 2, FAILURE: 0, REVOKED: 0, RETRY: 0 })
  t.same(byName(s, 'boom'), { PENDING: 0, RECEIVED: 0, STARTED: 0, SUCCESS: 0, FAILURE: 1, REVOKED: 0, RETRY: 0 })
  t.equal(s.get('celery_workers'), 1)
  t.equal(s.get(key('celery_queue_length', { queue_name: 'jobs' })), 0)
  t.equal(s.get('celery_task_latency_count'), 3)
  t.equal(s.get(key('celery_task_runtime_seconds_count', { name: 'send' })), 2)
  t.equal(s.get(key('celery_tasks_runtime_seconds_count', { name: 'send' })), 2, 'the alias is not namespaced either')
  t.ok(s.has('upstream_django_http_requests_before_middlewares_total'), 'django series take the namespace')
  t.notOk([...s.keys()].some((k) => k.startsWith('upstream_celery')), 'celery series never do')
  t.notMatch((await app.inject('/metrics')).body, 'example.org', 'job data never reaches the exposition')

  const named = async (): Promise<number> => (await admin.client('LIST') as string).split('\n').filter((l) => l.includes(` name=upstream-metrics-worker:${prefix} `)).length
  t.equal(await named(), 2, 'two connections while running')
  await app.close()
  closed = true
  t.equal(await until(named, (n) => n === 0, 'connections to close'), 0, 'none after app.close()')
})

t.test('worker option errors name the option and never echo the broker URL', async (t) => {
  const cases: Array<[unknown, string]> = [
    ['yes', 'worker'],
    [{ queues: ['a:b'] }, 'worker.queues'],
    [{ queues: [] }, 'worker.queues'],
    [{ prefix: '' }, 'worker.prefix'],
    [{ broker: 'http://user:hunter2@host/0' }, 'worker.broker'],
    [{ broker: 'redis://user:hunter2@host/x' }, 'worker.broker'],
    [{ queue: ['a'] }, 'worker.queue']
  ]
  for (const [worker, name] of cases) {
    const app = Fastify()
    const err = await app.register(upstreamMetrics, { worker } as never).then(() => undefined, (e: Error & { code?: string }) => e)
    t.equal(err?.code, 'UPSTREAM_METRICS_INVALID_OPTION', name)
    t.match(err?.message, `option "${name}"`)
    t.notMatch(err?.message, 'hunter2')
    await app.close()
  }
})

t.test('closing the app while the worker connects logs nothing', async (t) => {
  for (let round = 0; round < 5; round++) {
    let logs = ''
    const app = Fastify({ logger: { level: 'trace', stream: { write: (line: string) => { logs += line } } } })
    await app.register(upstreamMetrics, { runtimeMetrics: false, worker: { broker: REDIS_URL, queues: ['jobs'], prefix: uniquePrefix('close') } })
    await app.ready()
    // close() resolves once the collector's connections have ended: no error can come after it.
    await app.close()
    t.notMatch(logs, /Redis|retrying|"level":[45]0/, `round ${round}: no warning or error logged`)
  }
})
