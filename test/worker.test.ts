import { spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import t from 'tap'
import { Queue, Worker, type Job } from 'bullmq'
import IORedis from 'ioredis'
import { Store } from '../lib/store'
import { Telemetry } from '../lib/telemetry'
import { WorkerCollector } from '../lib/worker/collector'
import {
  BIN, REDIS_URL, byName, connection, dropPrefix, ensureBuilt, freePort, key, parse, scrape, startExporter, startRedis, tasks, uniquePrefix, until
} from './fixtures/worker-harness'

ensureBuilt()

const SECRET = 'patient-4711-never-in-labels'

t.test('the command serves exact celery values for a known mix of BullMQ jobs, and stops cleanly on SIGTERM', async (t) => {
  const prefix = uniquePrefix('bin')
  const exporter = await startExporter(['--broker', REDIS_URL, '--queue', 'mail', '--prefix', prefix])
  const queue = new Queue('mail', { connection, prefix })
  const workers: Worker[] = []
  t.teardown(async () => {
    await Promise.all(workers.map(async (w) => await w.close(true)))
    await queue.close()
    exporter.child.kill('SIGKILL')
    await dropPrefix(prefix)
  })
  await exporter.waitFor('Connected to broker')

  const initial = await scrape(exporter.url)
  t.same(tasks(initial), { PENDING: 0, RECEIVED: 0, STARTED: 0, SUCCESS: 0, FAILURE: 0, REVOKED: 0, RETRY: 0 }, 'every state exposed at 0 from the start')
  t.equal(initial.get('celery_workers'), 0)
  t.equal(initial.get(key('celery_queue_length', { queue_name: 'mail' })), 0)
  t.equal(initial.get('celery_task_latency_count'), 0)

  // Phase A, no worker: jobs wait, two are scheduled, one of those is removed.
  for (let i = 0; i < 3; i++) await queue.add('send', { to: SECRET })
  await queue.add('boom', {})
  await queue.add('flaky', {}, { attempts: 2, backoff: { type: 'fixed', delay: 600_000 } })
  await queue.add('quick', {}, { attempts: 2 })
  await queue.add('later', {}, { delay: 600_000 })
  const gone = await queue.add('gone', {}, { delay: 600_000 })
  await gone.remove()

  const a = await until(async () => await scrape(exporter.url), (s) => tasks(s).REVOKED === 1, 'the removed job')
  t.same(tasks(a), { PENDING: 6, RECEIVED: 1, STARTED: 0, SUCCESS: 0, FAILURE: 0, REVOKED: 1, RETRY: 0 }, 'waiting jobs PENDING, scheduled RECEIVED, removed REVOKED')
  t.same(byName(a, 'send'), { PENDING: 3, RECEIVED: 0, STARTED: 0, SUCCESS: 0, FAILURE: 0, REVOKED: 0, RETRY: 0 })
  t.same(byName(a, 'gone'), { PENDING: 0, RECEIVED: 0, STARTED: 0, SUCCESS: 0, FAILURE: 0, REVOKED: 1, RETRY: 0 })
  t.equal(a.get(key('celery_queue_length', { queue_name: 'mail' })), 6)
  t.equal(a.get('celery_workers'), 0)

  // Phase B: a worker processes them; "flaky" waits ten minutes for its retry, "quick" retries at once.
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  const processor = async (job: Job): Promise<string> => {
    if (job.name === 'boom') throw new Error('boom')
    if ((job.name === 'flaky' || job.name === 'quick') && job.attemptsMade === 0) throw new Error('first attempt fails')
    if (job.name === 'slow') await held
    return 'ok'
  }
  workers.push(new Worker('mail', processor, { connection, prefix, name: 'w1' }))
  const b1 = await until(async () => await scrape(exporter.url), (s) => tasks(s).SUCCESS === 4 && tasks(s).FAILURE === 1 && tasks(s).RETRY === 1, 'phase B')
  t.same(tasks(b1), { PENDING: 0, RECEIVED: 1, STARTED: 0, SUCCESS: 4, FAILURE: 1, REVOKED: 1, RETRY: 1 })
  await queue.add('slow', {})
  const b = await until(async () => await scrape(exporter.url), (s) => tasks(s).STARTED === 1, 'the held job to start')
  t.same(tasks(b), { PENDING: 0, RECEIVED: 1, STARTED: 1, SUCCESS: 4, FAILURE: 1, REVOKED: 1, RETRY: 1 })
  t.same(byName(b, 'send'), { PENDING: 0, RECEIVED: 0, STARTED: 0, SUCCESS: 3, FAILURE: 0, REVOKED: 0, RETRY: 0 })
  t.same(byName(b, 'boom'), { PENDING: 0, RECEIVED: 0, STARTED: 0, SUCCESS: 0, FAILURE: 1, REVOKED: 0, RETRY: 0 })
  t.same(byName(b, 'flaky'), { PENDING: 0, RECEIVED: 0, STARTED: 0, SUCCESS: 0, FAILURE: 0, REVOKED: 0, RETRY: 1 })
  t.same(byName(b, 'quick'), { PENDING: 0, RECEIVED: 0, STARTED: 0, SUCCESS: 1, FAILURE: 0, REVOKED: 0, RETRY: 0 })
  t.same(byName(b, 'later'), { PENDING: 0, RECEIVED: 1, STARTED: 0, SUCCESS: 0, FAILURE: 0, REVOKED: 0, RETRY: 0 })
  t.same(byName(b, 'slow'), { PENDING: 0, RECEIVED: 0, STARTED: 1, SUCCESS: 0, FAILURE: 0, REVOKED: 0, RETRY: 0 })
  t.equal(b.get('celery_workers'), 1, 'the running worker is counted')
  t.equal(b.get(key('celery_queue_length', { queue_name: 'mail' })), 0)
  // First starts only, as the Celery exporter: send ×3, boom, flaky, quick, slow; not quick's second attempt.
  t.equal(b.get('celery_task_latency_count'), 7)
  t.equal(b.get(key('celery_task_latency_bucket', { le: '+Inf' })), 7)
  t.ok(b.get('celery_task_latency_sum')! > 0)
  t.equal(b.get(key('celery_task_runtime_seconds_count', { name: 'send' })), 3)
  t.equal(b.get(key('celery_task_runtime_seconds_count', { name: 'quick' })), 1)
  t.equal(b.get(key('celery_tasks_runtime_seconds_count', { name: 'send' })), 3, 'the later exporters\' name carries the same series')
  t.notOk(b.has(key('celery_task_runtime_seconds_count', { name: 'boom' })), 'runtime is of succeeded tasks, as Celery\'s')

  // Phase C: the worker goes away, jobs wait, a new worker takes them.
  release()
  await until(async () => await scrape(exporter.url), (s) => tasks(s).SUCCESS === 5, 'the held job to finish')
  await workers.shift()!.close()
  const c1 = await until(async () => await scrape(exporter.url), (s) => s.get('celery_workers') === 0, 'the worker to leave')
  t.equal(c1.get('celery_workers'), 0, 'a closed worker is no longer counted')
  await queue.add('send', {})
  await queue.add('send', {})
  const c2 = await until(async () => await scrape(exporter.url), (s) => tasks(s).PENDING === 2, 'jobs to wait')
  t.equal(c2.get(key('celery_queue_length', { queue_name: 'mail' })), 2)
  t.equal(c2.get('celery_workers'), 0)
  workers.push(new Worker('mail', processor, { connection, prefix }))
  const c = await until(async () => await scrape(exporter.url), (s) => tasks(s).SUCCESS === 7, 'the new worker to process them')
  t.same(tasks(c), { PENDING: 0, RECEIVED: 1, STARTED: 0, SUCCESS: 7, FAILURE: 1, REVOKED: 1, RETRY: 1 })
  t.equal(c.get('celery_workers'), 1, 'an unnamed worker is counted too')
  t.equal(c.get(key('celery_queue_length', { queue_name: 'mail' })), 0)
  t.equal(c.get('celery_task_latency_count'), 9)
  t.equal(c.get(key('celery_task_runtime_seconds_count', { name: 'send' })), 5)
  t.equal(c.get(key('celery_task_runtime_seconds_count', { name: 'slow' })), 1)

  const text = await (await fetch(exporter.url)).text()
  t.notMatch(text, SECRET, 'job data never reaches the exposition')
  t.match(text, '# HELP celery_tasks Number of tasks per state\n# TYPE celery_tasks gauge\n')
  t.match(text, '# HELP celery_task_latency Seconds between a task is received and started.\n# TYPE celery_task_latency histogram\n')
  t.match(text, 'celery_task_latency_bucket{le="0.005"}')
  t.match(text, 'celery_task_latency_bucket{le="10.0"}')
  t.match(text, /^process_cpu_seconds_total /m, 'process metrics, as prometheus_client\'s default registry')

  exporter.child.kill('SIGTERM')
  const exit = await exporter.exit
  t.same(exit, { code: 0, signal: null }, 'SIGTERM exits with status 0')
  t.match(exporter.stderr(), 'Shutting down')
  t.notMatch(exporter.stderr(), /Error|at .*\.js:\d+/, 'no stack trace on a normal shutdown')
})

t.test('without --queue, every queue under the prefix is found, including ones created later', async (t) => {
  const prefix = uniquePrefix('disc')
  const before = new Queue('alpha', { connection, prefix })
  await before.add('x', {})
  const exporter = await startExporter(['--broker', REDIS_URL, '--prefix', prefix, '--discover-interval', '1'])
  const after = new Queue('beta', { connection, prefix })
  t.teardown(async () => {
    await before.close()
    await after.close()
    exporter.child.kill('SIGKILL')
    await dropPrefix(prefix)
  })
  await exporter.waitFor('Connected to broker')
  await after.add('y', {})
  await after.add('y', {})
  // Jobs that finish before the new queue is found are counted all the same.
  const doneBeforeFound = new Queue('gamma', { connection, prefix })
  const worker = new Worker('gamma', async () => 'ok', { connection, prefix })
  t.teardown(async () => {
    await worker.close(true)
    await doneBeforeFound.close()
  })
  await doneBeforeFound.add('z', {})
  await doneBeforeFound.add('z', {})
  const s = await until(async () => await scrape(exporter.url), (s) => s.get(key('celery_queue_length', { queue_name: 'beta' })) === 2 && tasks(s).SUCCESS === 2, 'the new queues')
  t.equal(s.get(key('celery_queue_length', { queue_name: 'alpha' })), 1)
  t.equal(s.get(key('celery_queue_length', { queue_name: 'beta' })), 2)
  t.equal(s.get(key('celery_queue_length', { queue_name: 'gamma' })), 0)
  t.same(byName(s, 'z'), { PENDING: 0, RECEIVED: 0, STARTED: 0, SUCCESS: 2, FAILURE: 0, REVOKED: 0, RETRY: 0 })
  t.same(byName(s, 'x'), { PENDING: 1, RECEIVED: 0, STARTED: 0, SUCCESS: 0, FAILURE: 0, REVOKED: 0, RETRY: 0 }, 'a job waiting since before the start is PENDING')
  t.equal(tasks(s).PENDING, 3, 'waiting jobs of both queues')
})

t.test('killed connections are reopened and later events still counted exactly once', async (t) => {
  const prefix = uniquePrefix('kill')
  const exporter = await startExporter(['--broker', REDIS_URL, '--queue', 'q', '--prefix', prefix])
  const queue = new Queue('q', { connection, prefix })
  const worker = new Worker('q', async () => 'ok', { connection, prefix })
  const admin = new IORedis(REDIS_URL)
  t.teardown(async () => {
    await worker.close(true)
    await queue.close()
    admin.disconnect()
    exporter.child.kill('SIGKILL')
    await dropPrefix(prefix)
  })
  await exporter.waitFor('Connected to broker')
  await queue.add('a', {})
  await until(async () => await scrape(exporter.url), (s) => tasks(s).SUCCESS === 1, 'the first job')

  const mine = (await admin.client('LIST') as string).split('\n').filter((l) => l.includes(` name=upstream-metrics-worker:${prefix} `))
  t.equal(mine.length, 2, 'the exporter holds two named connections')
  for (const line of mine) await admin.client('KILL', 'ID', /\bid=(\d+)/.exec(line)![1]!)
  // Jobs finish while the exporter is reconnecting: it resumes from its stream position.
  for (let i = 0; i < 3; i++) await queue.add('a', {})
  const s = await until(async () => await scrape(exporter.url), (s) => tasks(s).SUCCESS >= 4, 'events after the kill')
  await exporter.waitFor('Connected to broker', 2)
  const after = await scrape(exporter.url)
  t.equal(tasks(after).SUCCESS, 4, 'each job counted once')
  t.equal(s.get(key('celery_task_runtime_seconds_count', { name: 'a' })), 4)
  t.equal(after.get('celery_workers'), 1)
})

t.test('a Redis restart (a private redis-server, emptied): the exporter keeps serving, then follows the new stream', async (t) => {
  const port = await freePort()
  const broker = `redis://127.0.0.1:${port}/0`
  let redis = await startRedis(port)
  const prefix = uniquePrefix('restart')
  const privateConnection = { host: '127.0.0.1', port }
  const exporter = await startExporter(['--broker', broker, '--queue', 'r', '--prefix', prefix])
  const queue = new Queue('r', { connection: privateConnection, prefix })
  const worker = new Worker('r', async () => 'ok', { connection: privateConnection, prefix })
  queue.on('error', () => {})
  worker.on('error', () => {})
  t.teardown(async () => {
    await worker.close(true)
    await queue.close()
    exporter.child.kill('SIGKILL')
    redis.kill('SIGKILL')
  })
  await exporter.waitFor('Connected to broker')
  await queue.add('a', {})
  await queue.add('a', {})
  await until(async () => await scrape(exporter.url), (s) => tasks(s).SUCCESS === 2, 'jobs before the restart')

  redis.kill('SIGTERM')
  await once(redis, 'exit')
  const during = await scrape(exporter.url)
  t.equal(tasks(during).SUCCESS, 2, 'still serving the values while Redis is down')
  t.equal(during.get('celery_workers'), 1, 'the last reading is kept while Redis is unreachable')

  redis = await startRedis(port)
  await exporter.waitFor('Connected to broker', 2)
  t.match(exporter.stderr(), 'the event stream was recreated')
  for (let i = 0; i < 3; i++) await queue.add('a', {})
  const after = await until(async () => await scrape(exporter.url), (s) => tasks(s).SUCCESS >= 5, 'jobs after the restart')
  t.equal(tasks(after).SUCCESS, 5, 'jobs after the restart counted, none twice')
  t.equal(after.get(key('celery_task_runtime_seconds_count', { name: 'a' })), 5)
})

t.test('a blocking read left unanswered (CLIENT PAUSE on a private redis-server) is abandoned and events are still counted', async (t) => {
  const port = await freePort()
  const redis = await startRedis(port)
  const prefix = uniquePrefix('pause')
  const logs: string[] = []
  const log = { info: (_: object, msg: string) => logs.push(msg), warn: (_: object, msg: string) => logs.push(msg), error: (_: object, msg: string) => logs.push(msg) }
  const store = new Store('', 100)
  const telemetry = new Telemetry(store, 100)
  const collector = new WorkerCollector(store, { IORedis, broker: `redis://127.0.0.1:${port}/0`, queues: ['p'], prefix, log, blockMs: 300 })
  const privateConnection = { host: '127.0.0.1', port }
  const queue = new Queue('p', { connection: privateConnection, prefix })
  const admin = new IORedis(port, '127.0.0.1')
  const worker = new Worker('p', async () => 'ok', { connection: privateConnection, prefix, autorun: false })
  t.teardown(async () => {
    await worker.close(true)
    await queue.close()
    await collector.close()
    await telemetry.shutdown()
    admin.disconnect()
    redis.kill('SIGKILL')
  })
  const metrics = async (): Promise<Map<string, number>> => {
    await collector.refresh()
    return parse(telemetry.serialize(await telemetry.collect()))
  }
  collector.start()
  await until(async () => logs, (l) => l.some((m) => m.includes('Connected to broker')), 'the collector to connect')
  // Reads issued during the pause get no answer for longer than their BLOCK time.
  await admin.client('PAUSE', '3500', 'ALL')
  await until(async () => logs, (l) => l.some((m) => m.includes('a blocking read went unanswered')), 'the watchdog')
  worker.run().catch(() => {})
  for (let i = 0; i < 3; i++) await queue.add('a', {})
  const s = await until(metrics, (s) => tasks(s).SUCCESS === 3, 'events after the pause')
  t.equal(tasks(s).SUCCESS, 3, 'the loop recovered with a new connection')
  t.equal(s.get('celery_workers'), 1)
})

t.test('the command line: --help, --version, and bad arguments exit 2 with the usage', async (t) => {
  const run = (...args: string[]): { status: number | null, out: string, err: string } => {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 10_000 })
    return { status: r.status, out: r.stdout, err: r.stderr }
  }
  const help = run('--help')
  t.equal(help.status, 0)
  t.match(help.out, /--broker URL[\s\S]*--addr HOST:PORT[\s\S]*--queue NAME[\s\S]*--prefix PREFIX/)
  t.match(run('--version').out, /^\d+\.\d+\.\d+\n$/)
  for (const args of [['--addr', 'nope'], ['--addr', '127.0.0.1:70000'], ['--broker', 'http://h/0'], ['--queue', 'a:b'], ['--prefix', ''], ['--discover-interval', '0'], ['--bogus']]) {
    const bad = run(...args)
    t.equal(bad.status, 2, args.join(' '))
    t.match(bad.err, /usage: upstream-metrics-worker/)
  }
  t.notMatch(run('--broker', 'http://user:hunter2@h/0').err, 'hunter2', 'a password in the URL is not echoed')
  // A broker URL in the wrong place (no option before it, or after another option) is not echoed either.
  const url = 'redis://:hunter2@127.0.0.1:6379/0'
  for (const args of [[url], ['--broker', REDIS_URL, url], ['--addr', url], ['--queue', url], ['--prefix', '--broker', url], ['--discover-interval', url], ['--broker', `${REDIS_URL}?password=hunter2`, '--bogus']]) {
    const bad = run(...args)
    t.equal(bad.status, 2, `${args[0]!}: a usage error`)
    t.notMatch(bad.err + bad.out, 'hunter2', `${args[0]!}: the password is not echoed`)
  }
  const fromEnv = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8', timeout: 10_000, env: { ...process.env, BROKER_URL: url } })
  t.match(fromEnv.stdout, 'Defaults to redis://:***@127.0.0.1:6379/0', 'the usage shows BROKER_URL without its password')
  t.notMatch(fromEnv.stdout + fromEnv.stderr, 'hunter2')
  const tooOften = run('--discover-interval', '0.000001')
  t.equal(tooOften.status, 2, 'a discovery interval below a second is refused')
  t.match(tooOften.err, /--discover-interval must be at least 1 second/)
})

t.test('a port already in use is a runtime error: exit 1 with the reason, no usage', async (t) => {
  const busy = createServer()
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => busy.close())
  const { port } = busy.address() as { port: number }
  const r = spawnSync(process.execPath, [BIN, '--broker', REDIS_URL, '--addr', `127.0.0.1:${port}`], { encoding: 'utf8', timeout: 10_000 })
  t.equal(r.status, 1)
  t.match(r.stderr, `upstream-metrics-worker: error: cannot listen on 127.0.0.1:${port}: the address is already in use (EADDRINUSE)`)
  t.notMatch(r.stderr, /usage:/, 'no usage text: the arguments were right')
})

t.test('jobs that leave without an event (drain, obliterate) are caught at a scrape and the state rebuilt', async (t) => {
  const prefix = uniquePrefix('drain')
  const logs: string[] = []
  const log = { info: (_: object, msg: string) => logs.push(msg), warn: (_: object, msg: string) => logs.push(msg), error: (_: object, msg: string) => logs.push(msg) }
  const store = new Store('', 100)
  const telemetry = new Telemetry(store, 100)
  const collector = new WorkerCollector(store, { IORedis, broker: REDIS_URL, queues: ['d'], prefix, log, blockMs: 200, rebuildIntervalMs: 0 })
  const queue = new Queue('d', { connection, prefix })
  t.teardown(async () => {
    await queue.close()
    await collector.close()
    await telemetry.shutdown()
    await dropPrefix(prefix)
  })
  const metrics = async (): Promise<Map<string, number>> => {
    await collector.refresh()
    return parse(telemetry.serialize(await telemetry.collect()))
  }
  collector.start()
  await until(async () => logs, (l) => l.some((m) => m.includes('Connected to broker')), 'the collector to connect')
  for (let i = 0; i < 3; i++) await queue.add('w', {})
  await queue.add('d', {}, { delay: 600_000 })
  const before = await until(metrics, (s) => tasks(s).PENDING === 3 && tasks(s).RECEIVED === 1, 'the jobs')
  t.equal(before.get(key('celery_queue_length', { queue_name: 'd' })), 3)

  await queue.drain() // removes the waiting jobs without an event per job
  const drained = await until(metrics, (s) => tasks(s).PENDING === 0, 'the rebuild after drain')
  t.same(tasks(drained), { PENDING: 0, RECEIVED: 1, STARTED: 0, SUCCESS: 0, FAILURE: 0, REVOKED: 0, RETRY: 0 }, 'not REVOKED: drain is not a removal per job')
  t.equal(drained.get(key('celery_queue_length', { queue_name: 'd' })), 0)

  await queue.obliterate({ force: true })
  const gone = await until(metrics, (s) => tasks(s).RECEIVED === 0, 'the rebuild after obliterate')
  t.same(tasks(gone), { PENDING: 0, RECEIVED: 0, STARTED: 0, SUCCESS: 0, FAILURE: 0, REVOKED: 0, RETRY: 0 })

  // The queue is used again after being obliterated: its new stream is followed.
  const worker = new Worker('d', async () => 'ok', { connection, prefix })
  t.teardown(async () => { await worker.close(true) })
  await queue.add('w', {})
  const again = await until(metrics, (s) => tasks(s).SUCCESS === 1, 'a job on the recreated queue')
  t.equal(tasks(again).SUCCESS, 1)
})
