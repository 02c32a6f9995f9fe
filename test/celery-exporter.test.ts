// danihodovic/celery-exporter's families from the upstream-metrics-worker command, for a known mix
// of real BullMQ jobs on the shared Redis (own DB index and prefix): each task event counted once
// with its name, worker host and queue, the exception class of a failure, a stalled job as
// rejected, a removed one as revoked, workers up and down with their active jobs; and labels bounded.
import t from 'tap'
import { Queue, Worker } from 'bullmq'
import { Store } from '../lib/store'
import { CELERY_EXPORTER } from '../lib/names'
import { CeleryExporterFamilies, PURGE_OFFLINE_WORKER_MS } from '../lib/worker/celery-exporter'
import { REDIS_URL, connection, dropPrefix, ensureBuilt, key, scrape, startExporter, uniquePrefix, until } from './fixtures/worker-harness'

ensureBuilt()

class SmtpDown extends Error {
  name = 'SmtpDown'
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))
const labels = (name: string, queue: string, hostname = 'host-a'): Record<string, string> => ({ name, hostname, queue_name: queue })

t.test('every task event of a known mix of BullMQ jobs, with name, hostname, queue_name and exception', async (t) => {
  const prefix = uniquePrefix('celery-exporter')
  const exporter = await startExporter(['--broker', REDIS_URL, '--queue', 'mail', '--queue', 'slow', '--prefix', prefix])
  const mail = new Queue('mail', { connection, prefix })
  const slow = new Queue('slow', { connection, prefix })
  const workers: Worker[] = []
  t.teardown(async () => {
    await Promise.all(workers.map(async (w) => await w.close(true)))
    await mail.close()
    await slow.close()
    exporter.child.kill('SIGKILL')
    await dropPrefix(prefix)
  })
  await exporter.waitFor('Connected to broker')

  for (let i = 0; i < 3; i++) await mail.add('send', {})
  await mail.add('boom', {})
  await mail.add('flaky', {}, { attempts: 2 })
  const cancelled = await mail.add('later', {}, { delay: 600_000 })
  await cancelled.remove()
  await slow.add('hang', {})

  let flakyRuns = 0
  workers.push(new Worker('mail', async (job) => {
    if (job.name === 'boom') throw new SmtpDown('no route to the SMTP relay')
    if (job.name === 'flaky' && flakyRuns++ === 0) throw new Error('first attempt fails')
    return 'done'
  }, { connection, prefix, name: 'w1@host-a' }))
  // Does not renew its lock and holds the job past it: BullMQ's stalled check hands the job back.
  let hangs = 0
  const hanging = new Worker('slow', async () => {
    if (hangs++ === 0) await sleep(3000)
  }, { connection, prefix, name: 'w2@host-b', skipLockRenewal: true, lockDuration: 500, stalledInterval: 500 })
  hanging.on('error', () => {}) // its lost lock is the point
  workers.push(hanging)

  const s = await until(async () => await scrape(exporter.url),
    (s) => s.get(key('celery_task_succeeded_total', labels('flaky', 'mail'))) === 1 && s.get(key('celery_task_succeeded_total', labels('hang', 'slow', 'host-b'))) === 1,
    'every job finished')
  const get = (name: string, l: Record<string, string>): number | undefined => s.get(key(name, l))
  t.equal(get('celery_task_sent_total', labels('send', 'mail', 'generic')), 3, 'sent: the producer host is not known, as celery-exporter\'s generic hostname')
  t.equal(get('celery_task_sent_total', labels('later', 'mail', 'generic')), 1)
  t.equal(get('celery_task_received_total', labels('send', 'mail')), 3)
  t.equal(get('celery_task_started_total', labels('send', 'mail')), 3)
  t.equal(get('celery_task_succeeded_total', labels('send', 'mail')), 3)
  t.equal(get('celery_task_runtime_count', labels('send', 'mail')), 3, 'runtime observed on success')
  t.equal(get('celery_task_queue_wait_time_count', labels('send', 'mail')), 3, 'queue wait observed on start')
  t.equal(get('celery_task_failed_total', { ...labels('boom', 'mail'), exception: 'SmtpDown' }), 1, 'the exception class off the stored stack')
  t.equal(get('celery_task_failed_total', { ...labels('send', 'mail'), exception: '' }), 0, 'the other counters of a task are shown at 0, as celery-exporter does')
  t.equal(get('celery_task_retried_total', labels('flaky', 'mail')), 1)
  t.equal(get('celery_task_started_total', labels('flaky', 'mail')), 2, 'each attempt starts')
  t.equal(get('celery_task_revoked_total', labels('later', 'mail', 'generic')), 1, 'removed before it ran: revoked, on no worker')
  t.equal(get('celery_task_rejected_total', labels('hang', 'slow', 'host-b')), 1, 'a stalled job: rejected')
  t.equal(get('celery_task_retried_total', labels('hang', 'slow', 'host-b')), 0, 'and not a retry')
  t.equal(get('celery_task_rejected_total', labels('send', 'mail')), 0)
  t.equal(get('celery_task_runtime_bucket', { ...labels('send', 'mail'), le: '+Inf' }), 3)

  const workersNow = await until(async () => await scrape(exporter.url), (s) => s.get(key('celery_worker_up', { hostname: 'host-a' })) === 1 && s.get(key('celery_worker_up', { hostname: 'host-b' })) === 1, 'both workers up')
  t.equal(workersNow.get(key('celery_worker_tasks_active', { hostname: 'host-a' })), 0)
  t.equal(workersNow.get(key('celery_active_worker_count', { queue_name: 'mail' })), 1)
  t.equal(workersNow.get(key('celery_active_worker_count', { queue_name: 'slow' })), 1)

  await hanging.close(true)
  const down = await until(async () => await scrape(exporter.url), (s) => s.get(key('celery_worker_up', { hostname: 'host-b' })) === 0, 'the closed worker down')
  t.equal(down.get(key('celery_active_worker_count', { queue_name: 'slow' })), 0)
  t.equal(down.get(key('celery_worker_up', { hostname: 'host-a' })), 1)
  const text = await (await fetch(exporter.url)).text()
  t.match(text, '# HELP celery_task_sent_total Sent when a task message is published.\n# TYPE celery_task_sent_total counter', 'HELP and TYPE as celery-exporter')
  t.match(text, /celery_task_queue_wait_time_bucket\{[^}]*le="1800(\.0)?"/, 'queue wait buckets as celery-exporter')
})

t.test('labels are bounded: long or unprintable names, hosts and exceptions; cardinality capped; gone workers purged', async (t) => {
  let now = 0
  const store = new Store('', 20)
  const families = new CeleryExporterFamilies(store, () => now)
  const long = 'x'.repeat(201)
  families.started({ name: long, queue: 'q', hostname: 'w@\u0007bell' }, 1)
  families.failed({ name: 'report', queue: 'q', hostname: 'w@h' }, JSON.stringify(['TypeError: a\n at x', `${long}: b`]))
  families.failed({ name: 'report', queue: 'q', hostname: 'w@h' }, undefined)
  families.failed({ name: 'report', queue: 'q', hostname: 'w@h' }, JSON.stringify(['RangeError: ok']))
  for (let i = 0; i < 100; i++) families.sent({ name: `n${i}`, queue: 'q', hostname: undefined })
  const cells = (spec: typeof CELERY_EXPORTER.sent): Array<Record<string, unknown>> => [...store.families.find((f) => f.spec === spec)!.series()].map((c) => c.attributes)
  t.same(cells(CELERY_EXPORTER.started), [{ name: 'other', hostname: 'other', queue_name: 'q' }, { name: 'report', hostname: 'h', queue_name: 'q' }], 'too long a name and an unprintable host are `other`')
  t.same(cells(CELERY_EXPORTER.failed).filter((a) => a.name === 'report').map((a) => a.exception).sort(), ['', 'RangeError', 'UnknownException'], 'the last attempt\'s class, or UnknownException')
  t.equal(cells(CELERY_EXPORTER.sent).length, 20, 'names past the cardinality limit go to the overflow series')

  families.workers([{ hostname: 'a@h1', queue: 'q', active: 2 }, { hostname: 'b@h1', queue: 'q', active: 1 }, { hostname: undefined, queue: 'r', active: 0 }])
  const gauge = (spec: typeof CELERY_EXPORTER.workerUp): Record<string, number> => Object.fromEntries([...store.families.find((f) => f.spec === spec)!.series()].map((c) => [String(Object.values(c.attributes)[0]), c.value]))
  t.same(gauge(CELERY_EXPORTER.workerUp), { h1: 1, generic: 1 }, 'workers by host, as celery-exporter\'s nodesplit; an unnamed worker is generic')
  t.same(gauge(CELERY_EXPORTER.workerTasksActive), { h1: 3, generic: 0 })
  t.same(gauge(CELERY_EXPORTER.activeWorkerCount), { q: 2, r: 1 })
  families.workers([{ hostname: undefined, queue: 'r', active: 0 }])
  t.same(gauge(CELERY_EXPORTER.workerUp), { h1: 0, generic: 1 }, 'a worker gone is shown down')
  t.same(gauge(CELERY_EXPORTER.activeWorkerCount), { q: 0, r: 1 })
  now += PURGE_OFFLINE_WORKER_MS
  families.workers([{ hostname: undefined, queue: 'r', active: 0 }])
  t.same(gauge(CELERY_EXPORTER.workerUp), { generic: 1 }, 'then forgotten, as celery-exporter purges offline workers')
})
