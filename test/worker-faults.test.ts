import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import Fastify from 'fastify'
import { Queue, Worker } from 'bullmq'
import IORedis from 'ioredis'
import upstreamMetrics from '../lib/index'
import { CELERY_STATES } from '../lib/worker/collector'
import { parse as parseExposition } from './helpers/metrics'
import { killOnExit } from './helpers/children'
import {
  REDIS_URL, byName, connection, dropPrefix, ensureBuilt, finished, followedQueue, freePort, key, scrape, startCollector, startProxy, startRedis, tasks, uniquePrefix, until
} from './fixtures/worker-harness'

ensureBuilt()

/** A short event stream, so that a burst outruns it in a test (BullMQ keeps 10 000 events by default). */
const SHORT_STREAM = { streams: { events: { maxLen: 100 } } }

const lost = (s: Map<string, number>, queue: string): number => s.get(key('upstream_metrics_worker_events_lost_total', { queue_name: queue })) ?? 0

t.test('a burst while the exporter process is paused past the stream\'s length: the loss is counted and logged once, then counting is exact again', async (t) => {
  const { exporter, queue, worker, first: calm, burst } = await followedQueue(t, 'b', { tag: 'paused', queue: SHORT_STREAM, firstJob: 'j' })
  t.equal(calm.get(key('upstream_metrics_worker_events_lost_total', { queue_name: 'b' })), 0, 'exposed at 0 before any loss')

  exporter.child.kill('SIGSTOP')
  await burst(Array.from({ length: 600 }, () => ({ name: 'j' })))
  exporter.child.kill('SIGCONT')

  const s = await until(async () => await scrape(exporter.url), (s) => tasks(s).SUCCESS === 601 || lost(s, 'b') > 0, 'the burst counted or its loss reported')
  t.ok(lost(s, 'b') > 0, `the events trimmed unread are counted (${lost(s, 'b')})`)
  t.equal(tasks(s).PENDING + tasks(s).STARTED + tasks(s).RECEIVED + tasks(s).RETRY, 0, 'current states rebuilt: nothing left in the queue')
  t.equal(tasks(s).SUCCESS, 601, 'the jobs finished in the gap recovered from the completed set')
  t.equal(byName(s, 'j').SUCCESS, 601, 'by name')
  t.match(exporter.stderr(), /events of queue "b" were trimmed from its event stream before they were read/, 'logged with the reason')
  t.notMatch(exporter.stderr(), 'recreated', 'not taken for a recreated stream')

  const after = finished(worker, 3)
  for (let i = 0; i < 3; i++) await queue.add('j', {})
  await after
  const again = await until(async () => await scrape(exporter.url), (x) => tasks(x).SUCCESS === tasks(s).SUCCESS + 3, 'jobs after the burst')
  t.equal(tasks(again).SUCCESS, tasks(s).SUCCESS + 3, 'later jobs counted exactly once')
  t.equal(exporter.stderr().split('trimmed from its event stream').length - 1, 1, 'one log line for the episode')
})

t.test('the worker option: a request blocks the app while a burst outruns the stream; the loss is counted, the finished jobs recovered', async (t) => {
  const prefix = uniquePrefix('blocked')
  const dir = mkdtempSync(join(tmpdir(), 'umw-blocked-'))
  const go = join(dir, 'go')
  // Producer and worker in another process, which starts its burst when the file `go` appears.
  const burst = killOnExit(spawn(process.execPath, ['-e', `
    const { existsSync } = require('node:fs')
    const { Queue, Worker } = require('bullmq')
    const connection = ${JSON.stringify(connection)}
    const queue = new Queue('p', { connection, prefix: ${JSON.stringify(prefix)}, streams: { events: { maxLen: 100 } } })
    const worker = new Worker('p', async () => 'ok', { connection, prefix: ${JSON.stringify(prefix)}, concurrency: 50 })
    const wait = setInterval(async () => {
      if (!existsSync(${JSON.stringify(go)})) return
      clearInterval(wait)
      await queue.addBulk(Array.from({ length: 600 }, () => ({ name: 'p', data: {} })))
    }, 10)
    process.on('SIGTERM', async () => { await worker.close(true); await queue.close(); process.exit(0) })
  `], { stdio: 'ignore', cwd: join(__dirname, '..') }))
  let logs = ''
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => { logs += line } } } })
  await app.register(upstreamMetrics, { runtimeMetrics: false, worker: { broker: REDIS_URL, queues: ['p'], prefix } })
  // A handler that blocks the event loop until the other process has processed the burst.
  app.get('/block', async () => {
    writeFileSync(go, '')
    for (let i = 0; i < 3000; i++) {
      const done = spawnSync('redis-cli', ['-n', '6', 'ZCARD', `${prefix}:p:completed`], { encoding: 'utf8' }).stdout.trim()
      if (done === '600') return 'unblocked'
    }
    return 'gave up'
  })
  t.teardown(async () => {
    burst.kill('SIGTERM')
    await once(burst, 'exit')
    await app.close()
    await dropPrefix(prefix)
    rmSync(dir, { recursive: true, force: true })
  })
  await until(async () => logs, (l) => l.includes('Connected to broker'), 'the collector to connect')
  t.equal((await app.inject('/block')).body, 'unblocked', 'the burst was processed while the app was blocked')
  const s = await until(async () => parseExposition((await app.inject('/metrics')).body).samples, (s) => lost(s, 'p') > 0, 'the loss counted')
  t.ok(lost(s, 'p') > 0, `events trimmed unread: ${lost(s, 'p')}`)
  t.match(logs, 'trimmed from its event stream before they were read')
  t.equal(tasks(s).PENDING + tasks(s).STARTED, 0, 'current states rebuilt')
  t.equal(tasks(s).SUCCESS, 600, 'the jobs finished in the gap recovered from the completed set')
  t.equal(byName(s, 'p').SUCCESS, 600, 'by name')
})

t.test('one addBulk longer than the event stream: every job is found, counted and timed', async (t) => {
  const prefix = uniquePrefix('bulk')
  // The rebuild at a scrape (at most every 10 s by default) would hide a missed gap: out of the way here.
  const c = await startCollector({ broker: REDIS_URL, queues: ['k'], prefix, blockMs: 200, rebuildIntervalMs: 600_000 })
  const queue = new Queue('k', { connection, prefix, ...SHORT_STREAM })
  t.teardown(async () => {
    await queue.close()
    await c.close()
    await dropPrefix(prefix)
  })
  await until(async () => c.logs, (l) => l.some((m) => m.includes('Connected to broker')), 'the collector to connect')
  const N = 3000
  await queue.addBulk(Array.from({ length: N }, (_, i) => ({ name: `k${i % 3}`, data: {} })))
  const waiting = await until(c.metrics, (s) => tasks(s).PENDING === N, 'every job PENDING')
  t.equal(tasks(waiting).PENDING, N)
  t.equal([0, 1, 2].reduce((sum, i) => sum + byName(waiting, `k${i}`).PENDING, 0), N, 'by name too')

  // The workers' side keeps BullMQ's default stream length (a Queue writes it to the queue's meta).
  const producer = new Queue('k', { connection, prefix })
  await producer.waitUntilReady()
  const worker = new Worker('k', async () => 'ok', { connection, prefix, concurrency: 10 })
  t.teardown(async () => {
    await worker.close(true)
    await producer.close()
  })
  const s = await until(c.metrics, (s) => tasks(s).SUCCESS === N, 'every job processed')
  t.equal(s.get('celery_task_latency_count'), N, 'a latency for each')
  t.equal([0, 1, 2].reduce((sum, i) => sum + byName(s, `k${i}`).SUCCESS, 0), N)
  t.equal([0, 1, 2].reduce((sum, i) => sum + (s.get(key('celery_task_runtime_seconds_count', { name: `k${i}` })) ?? 0), 0), N, 'a runtime for each')
})

t.test('connections reset for a while, a burst outruns the stream meanwhile: the loss is reported as such, the finished jobs recovered', async (t) => {
  const proxy = await startProxy(6379)
  const { exporter, burst } = await followedQueue(t, 'r', { tag: 'reset', broker: `redis://127.0.0.1:${proxy.port}/6`, proxy, queue: SHORT_STREAM })
  proxy.reset()
  await burst(Array.from({ length: 500 }, () => ({ name: 'r' })))
  proxy.accept()
  await exporter.waitFor('Connected to broker', 2)
  const s = await until(async () => await scrape(exporter.url), (s) => lost(s, 'r') > 0, 'the loss reported')
  t.ok(lost(s, 'r') > 0)
  t.equal(tasks(s).SUCCESS, 501, 'the jobs finished during the outage recovered from the completed set')
  t.equal(byName(s, 'r').SUCCESS, 501, 'by name')
  t.match(exporter.stderr(), 'trimmed from its event stream')
  t.notMatch(exporter.stderr(), 'recreated', 'not mistaken for Redis restarted empty')
})

t.test('a gap recovery whose connection stops answering half-way through the finished jobs: retried, every job counted once', async (t) => {
  const proxy = await startProxy(6379)
  const { exporter, burst } = await followedQueue(t, 'c', { tag: 'cut', broker: `redis://127.0.0.1:${proxy.port}/6`, proxy, queue: SHORT_STREAM })
  proxy.reset()
  await burst(Array.from({ length: 2500 }, () => ({ name: 'c' })))
  // The finished jobs' hashes are read 1,000 a round trip: the connection stops answering inside the second round
  // (ioredis would resend what a reset connection left unanswered); its commands time out and it is replaced.
  const frozen = proxy.freezeAt('HMGET', 1500)
  proxy.accept()
  await frozen
  const s = await until(async () => await scrape(exporter.url), (s) => lost(s, 'c') > 0 && tasks(s).SUCCESS >= 2501, 'the gap recovered after the cut')
  t.equal(tasks(s).SUCCESS, 2501, 'each job finished in the gap counted once')
  t.equal(byName(s, 'c').SUCCESS, 2501, 'by name')
})

t.test('a command connection that stops answering without closing is replaced within seconds', async (t) => {
  const prefix = uniquePrefix('halfopen')
  const proxy = await startProxy(6379)
  const c = await startCollector({ broker: `redis://127.0.0.1:${proxy.port}/6`, queues: ['h'], prefix, blockMs: 300, refreshTimeoutMs: 300, commandTimeoutMs: 1000 })
  const queue = new Queue('h', { connection, prefix })
  const worker = new Worker('h', async () => 'ok', { connection, prefix })
  t.teardown(async () => {
    await worker.close(true)
    await queue.close()
    await c.close()
    await proxy.close()
    await dropPrefix(prefix)
  })
  await until(async () => c.logs, (l) => l.some((m) => m.includes('Connected to broker')), 'the collector to connect')
  await queue.add('a', {})
  await until(c.metrics, (s) => tasks(s).SUCCESS === 1, 'the first job')
  proxy.freeze()
  const five = finished(worker, 5)
  for (let i = 0; i < 5; i++) await queue.add('a', {})
  await five
  const s = await until(c.metrics, (s) => tasks(s).SUCCESS === 6, 'jobs after the freeze')
  t.equal(tasks(s).SUCCESS, 6, 'counted through new connections')
  t.ok(c.logs.some((m) => m.includes('command connection stopped answering')), 'the replacement is logged')
})

t.test('obliterate with jobs waiting: PENDING back to 0 at the next scrape', async (t) => {
  const prefix = uniquePrefix('oblit')
  const c = await startCollector({ broker: REDIS_URL, queues: ['o'], prefix, blockMs: 200 })
  const queue = new Queue('o', { connection, prefix })
  t.teardown(async () => {
    await queue.close()
    await c.close()
    await dropPrefix(prefix)
  })
  await until(async () => c.logs, (l) => l.some((m) => m.includes('Connected to broker')), 'the collector to connect')
  for (let i = 0; i < 10; i++) await queue.add('o', {})
  await until(c.metrics, (s) => tasks(s).PENDING === 10, 'ten waiting')
  await queue.obliterate({ force: true })
  const s = await until(c.metrics, (s) => tasks(s).PENDING === 0, 'the obliterated jobs gone')
  t.same(tasks(s), { PENDING: 0, RECEIVED: 0, STARTED: 0, SUCCESS: 0, FAILURE: 0, REVOKED: 0, RETRY: 0 }, 'gone, not REVOKED')
})

t.test('upsertJobScheduler replacing a schedule: its upcoming job is not counted twice', async (t) => {
  const prefix = uniquePrefix('sched')
  // A rebuild every minute at most: the replacement must be seen from the events.
  const c = await startCollector({ broker: REDIS_URL, queues: ['s'], prefix, blockMs: 200, rebuildIntervalMs: 60_000 })
  const queue = new Queue('s', { connection, prefix })
  t.teardown(async () => {
    await queue.close()
    await c.close()
    await dropPrefix(prefix)
  })
  await until(async () => c.logs, (l) => l.some((m) => m.includes('Connected to broker')), 'the collector to connect')
  await queue.upsertJobScheduler('report', { every: 600_000 }, { name: 'report' })
  await until(c.metrics, (s) => byName(s, 'report').RECEIVED + byName(s, 'report').PENDING === 1, 'the upcoming job')
  await queue.upsertJobScheduler('report', { every: 300_000 }, { name: 'report' })
  await queue.add('sentinel', {}, { delay: 600_000 })
  const s = await until(c.metrics, (s) => byName(s, 'sentinel').RECEIVED === 1, 'events after the replacement')
  t.equal(byName(s, 'report').RECEIVED + byName(s, 'report').PENDING, 1, 'one upcoming job, as BullMQ keeps')
})

t.test('job names from user input: 1 MB names never break a scrape; names past the cap keep their states together', async (t) => {
  const prefix = uniquePrefix('names')
  const c = await startCollector({ broker: REDIS_URL, queues: ['n'], prefix, blockMs: 200 }, 100)
  const queue = new Queue('n', { connection, prefix })
  t.teardown(async () => {
    await queue.close()
    await c.close()
    await dropPrefix(prefix)
  })
  await until(async () => c.logs, (l) => l.some((m) => m.includes('Connected to broker')), 'the collector to connect')
  const huge = Array.from({ length: 14 }, (_, i) => `${String.fromCharCode(97 + i)}${'x'.repeat(1 << 20)}`)
  for (const name of huge) await queue.add(name, {})
  for (let i = 0; i < 60; i++) await queue.add(`task-${i}`, {})
  const worker = new Worker('n', async () => 'ok', { connection, prefix, concurrency: 20 })
  t.teardown(async () => { await worker.close(true) })
  const text = await until(c.text, (x) => tasks(parseExposition(x).samples).SUCCESS === 74, 'every job')
  t.ok(text.length < 200_000, `the exposition stays small (${text.length} characters)`)
  const s = parseExposition(text).samples
  const labels = new Set([...s.keys()].filter((k) => k.startsWith('celery_tasks_by_name{')).map((k) => /name="([^"]*)"/.exec(k)?.[1]))
  t.ok(labels.size <= 14, `at most 14 names of 7 states under a limit of 100 series (${labels.size})`)
  t.notOk(labels.has(undefined), 'no by-name series without its name')
  for (const state of CELERY_STATES) {
    const sum = [...labels].reduce((a, name) => a + (s.get(key('celery_tasks_by_name', { name: name!, state })) ?? 0), 0)
    t.equal(sum, tasks(s)[state], `${state}: by-name sum equals celery_tasks`)
  }
  t.equal(byName(s, 'other').SUCCESS, 14 + 60 - (labels.size - 1), 'the huge names and those past the cap are `other`')
})

t.test('WRONGPASS from Redis: the worker option logs no credential', async (t) => {
  const port = await freePort()
  const redis = await startRedis(port, ['--requirepass', 'the-right-one'])
  let logs = ''
  const app = Fastify({ logger: { level: 'trace', stream: { write: (line: string) => { logs += line } } } })
  t.teardown(async () => {
    await app.close()
    redis.kill('SIGKILL')
    await once(redis, 'exit')
  })
  await app.register(upstreamMetrics, { runtimeMetrics: false, worker: { broker: `redis://default:rotated-pw-4711@127.0.0.1:${port}/0`, queues: ['q'], prefix: uniquePrefix('auth') } })
  await app.ready()
  await until(async () => logs, (l) => /WRONGPASS|invalid username-password/.test(l), 'the authentication error logged')
  t.notMatch(logs, 'rotated-pw-4711', 'the password is in no log line')
  t.notMatch(logs, '"args"', 'no command arguments either')
})

t.test('a Redis user that may not run scripts (ACL -@scripting): job names, workers and stacks are read all the same', async (t) => {
  class SmtpDown extends Error {
    name = 'SmtpDown'
  }
  const port = await freePort()
  const redis = await startRedis(port, ['--user', 'exporter', 'on', '>exporter-pw', '~*', '&*', '+@all', '-@scripting'])
  const broker = `redis://exporter:exporter-pw@127.0.0.1:${port}/0`
  const direct = { host: '127.0.0.1', port }
  const prefix = uniquePrefix('noscripts')
  const queue = new Queue('q', { connection: direct, prefix })
  const { metrics, logs, close } = await startCollector({ broker, queues: ['q'], prefix })
  const worker = new Worker('q', async (job) => { if (job.name === 'boom') throw new SmtpDown('no relay') }, { connection: direct, prefix, name: 'w1@host-a' })
  t.teardown(async () => {
    await worker.close(true)
    await queue.close()
    await close()
    redis.kill('SIGKILL')
    await once(redis, 'exit')
  })
  const probe = new IORedis(broker)
  await t.rejects(probe.eval('return 1', 0), /NOPERM/, 'the exporter\'s user may not run a script')
  probe.disconnect()
  await until(async () => logs, (l) => l.includes('upstream-metrics-worker: Connected to broker'), 'the collector connected')

  await queue.add('send', {})
  await queue.add('send', {})
  await queue.add('boom', {})
  const at = (name: string): Record<string, string> => ({ name, hostname: 'host-a', queue_name: 'q' })
  const s = await until(metrics, (s) => tasks(s).SUCCESS === 2 && tasks(s).FAILURE === 1, 'the three jobs finished')
  t.equal(s.get(key('celery_task_succeeded_total', at('send'))), 2, 'the worker read off each job on `active`')
  t.equal(s.get(key('celery_task_failed_total', { ...at('boom'), exception: 'SmtpDown' })), 1, 'the failure\'s stack read')
  t.notOk(logs.some((l) => l.includes('following the queues failed')), 'no read failed')
})
