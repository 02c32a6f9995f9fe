import t from 'tap'
import { Queue, Worker } from 'bullmq'
import {
  REDIS_URL, byName, connection, dropPrefix, ensureBuilt, finished, followedQueue, key, scrape, startExporter, tasks, uniquePrefix, until
} from './fixtures/worker-harness'

ensureBuilt()

/** A short event stream, so that a burst outruns it in a test (BullMQ keeps 10 000 events by default). */
const SHORT_STREAM = { streams: { events: { maxLen: 100 } } }

const lost = (s: Map<string, number>, queue: string): number => s.get(key('upstream_metrics_worker_events_lost_total', { queue_name: queue })) ?? 0
const runtimeCount = (s: Map<string, number>, name: string): number => s.get(key('celery_task_runtime_seconds_count', { name })) ?? 0
const latencyCount = (s: Map<string, number>): number => s.get(key('celery_task_latency_count', {})) ?? 0
const succeeded = (s: Map<string, number>, name: string, queue: string): number =>
  s.get(key('celery_task_succeeded_total', { name, hostname: 'w1', queue_name: queue })) ?? 0

t.test('a burst while the exporter is paused past the stream\'s length: jobs finished in the gap are counted exactly from the completed and failed sets', async (t) => {
  const { exporter, queue, worker, burst } = await followedQueue(t, 'e', {
    tag: 'exact',
    queue: SHORT_STREAM,
    worker: { name: 'w1' },
    processor: async (job) => { if (job.name === 'bad') throw new Error('no'); return 'ok' },
    firstJob: 'good'
  })

  exporter.child.kill('SIGSTOP')
  await burst([
    ...Array.from({ length: 600 }, () => ({ name: 'good' })),
    ...Array.from({ length: 100 }, () => ({ name: 'bad' }))
  ])
  exporter.child.kill('SIGCONT')

  const s = await until(async () => await scrape(exporter.url), (s) => lost(s, 'e') > 0 && tasks(s).SUCCESS >= 601, 'the gap reconciled')
  t.ok(lost(s, 'e') > 0, 'the stream was outrun: the trimmed events are still counted')
  t.equal(tasks(s).SUCCESS, 601, 'every success counted')
  t.equal(tasks(s).FAILURE, 100, 'every failure counted')
  t.equal(byName(s, 'good').SUCCESS, 601, 'successes by name')
  t.equal(byName(s, 'bad').FAILURE, 100, 'failures by name')
  t.equal(runtimeCount(s, 'good'), 601, 'a runtime observation per success, read from the job hashes')
  t.equal(latencyCount(s), 701, 'a latency observation per job started')
  t.equal(succeeded(s, 'good', 'e'), 601, 'celery_task_succeeded_total by worker')
  t.match(exporter.stderr(), /recovered 700 finished jobs \(600 succeeded, 100 failed\)/, 'the log says what was recovered')

  const after = finished(worker, 3)
  for (let i = 0; i < 3; i++) await queue.add('good', {})
  await after
  const again = await until(async () => await scrape(exporter.url), (x) => tasks(x).SUCCESS === 604, 'jobs after the burst')
  t.equal(tasks(again).SUCCESS, 604, 'later jobs counted exactly once')
})

t.test('jobs removed on completion cannot be recovered: they stay reported as lost, and the log says why', async (t) => {
  const { exporter, burst } = await followedQueue(t, 'r', { tag: 'removed', queue: { ...SHORT_STREAM, defaultJobOptions: { removeOnComplete: true } }, firstJob: 'j' })
  exporter.child.kill('SIGSTOP')
  await burst(Array.from({ length: 300 }, () => ({ name: 'j' })))
  exporter.child.kill('SIGCONT')
  const s = await until(async () => await scrape(exporter.url), (s) => lost(s, 'r') > 0, 'the loss reported')
  t.ok(tasks(s).SUCCESS < 301, 'removed jobs are not invented')
  t.match(exporter.stderr(), /removeOnComplete|removeOnFail/, 'the log names the cause of what cannot be recovered')
})

/** What Prometheus 3 sends when it scrapes. */
const PROMETHEUS_ACCEPT = 'application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2'

t.test('the command answers Prometheus in OpenMetrics with the _created series, as the plugin and the Celery exporter do; text to a plain scraper', async (t) => {
  const prefix = uniquePrefix('openmetrics')
  const exporter = await startExporter(['--broker', REDIS_URL, '--queue', 'o', '--prefix', prefix])
  const queue = new Queue('o', { connection, prefix })
  const worker = new Worker('o', async () => 'ok', { connection, prefix, name: 'w1' })
  t.teardown(async () => {
    exporter.child.kill('SIGKILL')
    await worker.close(true)
    await queue.close()
    await dropPrefix(prefix)
  })
  await exporter.waitFor('Connected to broker')
  const done = finished(worker, 1)
  await queue.add('good', {})
  await done
  await until(async () => await scrape(exporter.url), (s) => tasks(s).SUCCESS === 1, 'the job')

  const om = await fetch(exporter.url, { headers: { accept: PROMETHEUS_ACCEPT } })
  t.match(om.headers.get('content-type'), /^application\/openmetrics-text; version=1\.0\.0/, 'OpenMetrics to Prometheus')
  const body = await om.text()
  t.ok(body.endsWith('# EOF\n'), 'a complete OpenMetrics exposition')
  t.match(body, /^celery_task_succeeded_created\{[^}]*name="good"[^}]*\} \d+(\.\d+)?(e\+\d+)?$/m, '_created of a celery-exporter counter')
  t.match(body, /^celery_task_succeeded_total\{[^}]*name="good"[^}]*\} 1(\.0)?$/m, 'the counter itself')

  const plain = await fetch(exporter.url)
  t.match(plain.headers.get('content-type'), /^text\/plain; version=0\.0\.4/, 'text to a scraper that asks for nothing')
  t.match(await plain.text(), /^celery_task_succeeded_created\{/m, 'the _created series in text too, as prometheus_client writes them')
})
