// cluster: true with real workers (test/fixtures/cluster.mjs on the built dist/) and a real Prometheus.
import { execFileSync } from 'node:child_process'
import t, { type Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { key, parse } from './helpers/metrics'
import { freePort, get } from './helpers/net'
import { startProcess, startPrometheus } from './helpers/prometheus'
import { waitFor } from './helpers/wait'

const WHO = 'django_http_responses_total_by_status_view_method_total{method="GET",status="200",view="/who"}'

interface Cluster { port: number, output: () => string, exits: number[] }

/** test/fixtures/cluster.mjs: a primary and WORKERS workers on one port; stopped at teardown. */
async function startCluster (t: Test, env: Record<string, string>): Promise<Cluster> {
  const port = await freePort()
  const exits: number[] = []
  let ready = false
  const started = startProcess(t, 'cluster', process.execPath, ['test/fixtures/cluster.mjs'], { ...process.env, PORT: String(port), WORKERS: '3', ...env }, {
    onLine: (line) => {
      if (line === 'ready') ready = true
      else if (line.startsWith('exit ')) exits.push(Number(line.slice(5)))
    }
  })
  await waitFor('the cluster to listen', async () => {
    if (started.child.exitCode !== null) throw new Error('the cluster fixture exited')
    return ready
  }, { timeoutMs: 30_000, details: started.output })
  return { port, output: started.output, exits }
}

interface Answer { pid: number, at: number }

/** `clients` loops of GET /who on fresh connections until `total` answers or `deadlineMs`; failed requests are not answers. */
async function traffic (port: number, total: number, deadlineMs: number, onAnswer: (answers: Answer[]) => Promise<void> | void): Promise<{ answers: Answer[], failed: number }> {
  const answers: Answer[] = []
  let failed = 0
  const deadline = Date.now() + deadlineMs
  const client = async (): Promise<void> => {
    while (answers.length < total && Date.now() < deadline) {
      try {
        const reply = await get(`http://127.0.0.1:${port}/who`)
        if (reply.status !== 200) throw new Error(String(reply.status))
        answers.push({ pid: JSON.parse(reply.body).pid, at: Date.now() })
        await onAnswer(answers)
        // Paced, so that the run spans several scrapes and each stop falls between two of them.
        await sleep(10)
      } catch {
        failed++
        await sleep(5)
      }
    }
  }
  await Promise.all([client(), client(), client(), client()])
  return { answers, failed }
}

t.test('a worker that dies mid-traffic: increase() still equals the requests answered', async (t) => {
  const cluster = await startCluster(t, { RESPAWN: '1', RUNTIME: '1' })
  const prometheus = await startPrometheus(t, {
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    scrape_configs: [{ job_name: 'cluster', static_configs: [{ targets: [`127.0.0.1:${cluster.port}`] }] }]
  })
  const base = `http://127.0.0.1:${cluster.port}`
  for (let i = 0; i < 30; i++) t.equal((await get(`${base}/who`)).status, 200)
  // The window opens on a scrape that holds exactly the warm-up: every later answer is inside it.
  let t0 = 0
  await waitFor('Prometheus to hold the warm-up', async () => {
    const [value] = await prometheus.query(WHO)
    const [time] = await prometheus.query(`timestamp(${WHO})`)
    if (value?.value[1] !== '30' || time === undefined) return false
    t0 = Math.round(Number(time.value[1]) * 1000)
    // The value read may be of a newer scrape than the time read just before: both must be the same sample.
    return (await prometheus.query(WHO, t0 / 1000))[0]?.value[1] === '30'
  }, { timeoutMs: 20_000, details: prometheus.output })

  // Mid-traffic: one worker is stopped gracefully (SIGTERM, the app closes) and another one is killed (SIGKILL).
  let graceful: { pid: number, at: number } | undefined
  let killed: { pid: number, at: number } | undefined
  const busiest = (answers: Answer[], except?: number): number => {
    const counts = new Map<number, number>()
    for (const a of answers) if (a.pid !== except) counts.set(a.pid, (counts.get(a.pid) ?? 0) + 1)
    return [...counts].sort((a, b) => b[1] - a[1])[0]![0]
  }
  const run = await traffic(cluster.port, 2400, 20_000, (answers) => {
    if (graceful === undefined && answers.length >= 600) {
      graceful = { pid: busiest(answers), at: Date.now() }
      process.kill(graceful.pid, 'SIGTERM')
    } else if (killed === undefined && answers.length >= 1400) {
      killed = { pid: busiest(answers, graceful!.pid), at: Date.now() }
      process.kill(killed.pid, 'SIGKILL')
    }
  })
  const trafficEnd = Date.now()
  t.ok(graceful !== undefined && killed !== undefined, 'both workers were stopped mid-traffic')
  await waitFor('both workers to be gone', async () => cluster.exits.includes(graceful!.pid) && cluster.exits.includes(killed!.pid), { timeoutMs: 10_000, details: cluster.output })
  // A whole scrape interval after the last answer: the last counts are in.
  const t1Min = await prometheus.scrapedAfter('cluster', trafficEnd + 1000, 1)
  const [last] = await prometheus.query(`timestamp(${WHO})`)
  const t1 = Math.round(Number(last!.value[1]) * 1000)
  t.ok(t1 >= t1Min, 'the window closes on a scrape after the traffic')

  // A window exactly from the first to the last scrape: increase() does not extrapolate (factor 1).
  const window = `${t1 - t0}ms`
  const [raw] = await prometheus.samples(`${WHO}[${window}]`, t1 / 1000)
  t.equal(Math.round(raw!.values[0]![0] * 1000), t0, 'the window starts on the warm-up scrape')
  t.equal(Number(raw!.values[0]![1]), 30)
  const values = raw!.values.map(([, v]) => Number(v))
  t.ok(values.every((v, i) => i === 0 || v >= values[i - 1]!), `the counter never went down: ${values.join(' ')}`)
  const monotonic = await prometheus.samples(`{job="cluster",__name__=~".+_(total|bucket|count|sum)"}[${window}]`, t1 / 1000)
  const decreased = monotonic.filter((series) => series.values.some(([, v], i) => i > 0 && Number(v) < Number(series.values[i - 1]![1])))
  t.ok(monotonic.length > 100, `${monotonic.length} counter, bucket, count and sum series scraped`)
  t.same(decreased.map((s) => s.metric), [], 'none ever went down (CPU seconds and GC pause sums included)')

  const [increase] = await prometheus.query(`increase(${WHO}[${window}])`, t1 / 1000)
  const measured = Number(increase!.value[1])
  const answered = run.answers.length
  // Lost: what the killed worker counted after its last collection. Its last collection answered a round
  // that completed before the kill: every round of a scrape that was followed by another scrape before the
  // kill (Prometheus never overlaps scrapes of a target). Counting answers from the second scrape before the
  // kill on (not the last one) leaves a whole interval of margin for an answer received just before it was counted.
  const [ups] = await prometheus.samples(`up{job="cluster"}[${window}]`, t1 / 1000)
  const scrapesBefore = ups!.values.filter(([at, up]) => up === '1' && at * 1000 < killed!.at).map(([at]) => at * 1000)
  const since = scrapesBefore.at(-2) ?? t0
  const bound = run.answers.filter((a) => a.pid === killed!.pid && a.at >= since).length
  t.comment(`answered ${answered} (failed ${run.failed}), increase() ${measured}, lost ${answered - measured} (bound ${bound}: the killed worker's answers after its last collection)`)
  t.ok(measured <= answered, `increase() ${measured} is never above the ${answered} answers (a drop read as a reset would be)`)
  t.ok(answered - measured <= bound, `only the killed worker's last-interval answers may be missing: lost ${answered - measured} <= ${bound}`)
  t.ok(Number.isInteger(measured), 'an exact count, no extrapolation')
})

t.test('a worker stopped gracefully hands over its last counts: nothing lost', async (t) => {
  const cluster = await startCluster(t, { WORKERS: '2' })
  const answers: Answer[] = []
  for (let i = 0; i < 40; i++) answers.push({ pid: JSON.parse((await get(`http://127.0.0.1:${cluster.port}/who`)).body).pid, at: Date.now() })
  const pids = [...new Set(answers.map((a) => a.pid))]
  t.equal(pids.length, 2, 'both workers answered')
  // No scrape before: the primary has never collected this worker; only its final hand-over can count its answers.
  process.kill(pids[0]!, 'SIGTERM')
  await waitFor('the worker to exit', async () => cluster.exits.includes(pids[0]!), { timeoutMs: 10_000, details: cluster.output })
  const m = parse((await get(`http://127.0.0.1:${cluster.port}/metrics`)).body)
  t.equal(m.samples.get(WHO), 40, `every answer counted, ${answers.filter((a) => a.pid === pids[0]).length} of them by the stopped worker`)
})

t.test('non-finite gauges cross the process boundary; sums do not depend on the order workers answer in', async (t) => {
  const cluster = await startCluster(t, { APP_METRICS: '1', JITTER: '1' })
  const texts = new Set<string>()
  for (let i = 0; i < 25; i++) {
    const reply = await get(`http://127.0.0.1:${cluster.port}/metrics`)
    t.equal(reply.status, 200)
    const m = parse(reply.body)
    if (i === 0) {
      t.equal(m.samples.get(key('test_non_finite', { value: 'inf' })), Infinity)
      t.equal(m.samples.get(key('test_non_finite', { value: '-inf' })), -Infinity)
      t.ok(Number.isNaN(m.samples.get(key('test_non_finite', { value: 'nan' }))), 'NaN stays NaN')
      t.equal(m.samples.get('test_fraction_count'), 3)
    }
    texts.add(reply.body.split('\n').filter((line) => line.startsWith('test_fraction_sum')).join('\n'))
  }
  // 0.1 + 0.2 + 0.3 is 0.6000000000000001 in that order and 0.6 in others: one answer, the correctly rounded sum.
  t.same([...texts], ['test_fraction_sum 0.6'], 'the same sum on every scrape, whatever the arrival order')
})

t.test('node:cluster is loaded only by an app with cluster: true', async (t) => {
  // A child process of its own: this one (tap) may have loaded node:cluster already.
  const loaded = (options: string): string[] => {
    const script = `
      const Fastify = require('fastify')
      const upstreamMetrics = require('./dist/index.js').default
      const app = Fastify()
      app.register(upstreamMetrics, ${options})
      app.ready().then(() => app.inject('/metrics')).then(() => app.close()).then(() => {
        console.log(JSON.stringify(process.moduleLoadList.filter((m) => /^NativeModule (internal\\/)?cluster\\b/.test(m))))
      })`
    return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 })) as string[]
  }
  t.same(loaded('{ runtimeMetrics: false }'), [], 'not loaded without the option')
  t.ok(loaded('{ runtimeMetrics: false, cluster: true }').includes('NativeModule cluster'), 'loaded with it (the check can see it)')
})
