// Replicas, proven: three instances of the demo on one PostgreSQL database, scraped as ONE job by a real
// Prometheus that runs the repository's configuration (monitoring/prometheus/prometheus.yml: DNS discovery
// replaced by file_sd, intervals shortened) and alert rules (alerts/upstream.yml, `for:` shortened). Then the
// same with one of the three targets a cluster primary with four workers (`cluster: true`).
//
// Method, for the dashboard: traffic is spread over the instances, then stopped; once Prometheus has scraped
// every target after the last answer, nothing moves any more (scrapes are not counted: countScrape: false).
// Each panel query is reduced to its aggregations with the rate() taken off (`sum by (le) (rate(x_bucket[5m]))`
// becomes `sum by (le) (x_bucket)`): what Prometheus answers for those must equal the same aggregation computed
// here from each instance's own /metrics, exactly. The runtime series (CPU, memory, event loop) are live values
// that move between any two reads: for them the series must match one to one, CPU within what two cores can
// spend between the two reads, byte sizes within a factor of two.
//
// Method, for HighErrorRate: each scenario gets a fresh Prometheus, so the rule's 5-minute rate window holds that
// scenario's traffic only. The traffic is shaped per instance, in rounds: one instance answers 30 % of its
// requests with a 500 (GET /api/reports/legacy), the others none (GET /api/payers). With the same traffic to each,
// the job's ratio is 10 %: the alert must fire for the job. With a tenth of the traffic to the failing instance,
// it is 3 %: the alert must never fire, also after its `for:` has passed on the complete data.
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import { parse as parseYaml, stringify } from 'yaml'
import { parse, parseLabels } from './helpers/metrics'
import { freePort, get } from './helpers/net'
import { ROOT, startPrometheus, startProcess, type Prometheus } from './helpers/prometheus'
import { waitFor } from './helpers/wait'
// @ts-expect-error the traffic generator is plain JavaScript
import { generateTraffic } from '../example/traffic.mjs'

// Six demo instances (one a cluster of four) and six Prometheus servers: 78 s at load 10-16, more when busier.
t.setTimeout(300_000)

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const JOB = 'upstream'
/** The repository's `for:` durations, shortened; long enough that the ramp-up of a scenario cannot fire. */
const FOR = '3s'
const OK_ROUTE = '/api/payers'
const FAILING_ROUTE = '/api/reports/legacy'

interface Instance { name: string, address: string, base: string }

/** A database of the test's own on the same server, dropped at the end. */
async function ownDatabase (t: Test): Promise<string> {
  const name = `um_replicas_${process.pid}`
  const admin = new pg.Client({ connectionString: DATABASE_URL })
  await admin.connect()
  await admin.query(`DROP DATABASE IF EXISTS ${name}`)
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  t.teardown(async () => {
    const client = new pg.Client({ connectionString: DATABASE_URL })
    await client.connect()
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await client.end()
  })
  const url = new URL(DATABASE_URL)
  url.pathname = `/${name}`
  return url.toString()
}

async function startInstance (t: Test, name: string, databaseUrl: string, workers = 0): Promise<Instance> {
  const port = await freePort()
  let ready = false
  const started = startProcess(t, name, process.execPath, ['test/fixtures/demo-instance.mjs'], {
    ...process.env, DATABASE_URL: databaseUrl, REDIS_URL: '', PORT: String(port), WORKERS: String(workers)
  }, { onLine: (line) => { if (line === 'ready') ready = true } })
  await waitFor(`${name} to listen`, async () => {
    if (started.child.exitCode !== null) throw new Error(`${name} exited`)
    return ready
  }, { timeoutMs: 120_000, details: started.output })
  return { name, address: `127.0.0.1:${port}`, base: `http://127.0.0.1:${port}` }
}

/** The repository's Prometheus configuration and rules, with file_sd targets and shortened intervals. */
async function prometheusFor (t: Test, instances: Instance[]): Promise<Prometheus> {
  const config = parseYaml(readFileSync(join(ROOT, 'monitoring/prometheus/prometheus.yml'), 'utf8'))
  config.global.scrape_interval = '1s'
  config.global.evaluation_interval = '1s'
  const job = (config.scrape_configs as Array<Record<string, unknown>>).find((j) => j.job_name === JOB)!
  t.ok(job.dns_sd_configs !== undefined, 'the repository discovers the replicas through DNS')
  delete job.dns_sd_configs
  job.file_sd_configs = [{ files: ['targets.json'], refresh_interval: '1s' }]
  // Only the upstream job: the worker exporter and Prometheus itself are not part of this test.
  config.scrape_configs = [job]
  const rules = parseYaml(readFileSync(join(ROOT, 'alerts/upstream.yml'), 'utf8'))
  for (const group of rules.groups) for (const rule of group.rules) if (rule.for !== undefined) rule.for = FOR
  config.rule_files = ['upstream.yml']
  const prometheus = await startPrometheus(t, config, {
    'targets.json': JSON.stringify([{ targets: instances.map((i) => i.address) }]),
    'upstream.yml': stringify(rules)
  })
  await prometheus.scrapedAfter(JOB, 0, instances.length, 20_000)
  return prometheus
}

interface Aggregation { expr: string, op: 'sum' | 'max' | 'min', by: string[] | undefined, metric: string, matchers: Matcher[] }
interface Matcher { label: string, op: string, value: string }

const AGGREGATION = /\b(sum|max|min)\s*(?:by\s*\(([^)]*)\)\s*)?\(\s*(?:(?:rate|irate|increase)\(\s*([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s*\[[^\]]+\]\s*\)|([a-zA-Z_:][\w:]*)(\{[^}]*\})?)\s*\)/g
const MATCHER = /([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g

/** The aggregations of a panel query, each with its rate() taken off. */
function aggregations (panelExpr: string): Aggregation[] {
  return [...panelExpr.matchAll(AGGREGATION)].map((m) => {
    const metric = m[3] ?? m[5]!
    const selector = m[4] ?? m[6] ?? ''
    const by = m[2]?.split(',').map((l) => l.trim()).filter((l) => l !== '')
    const matchers = [...selector.matchAll(MATCHER)].map((x) => ({ label: x[1]!, op: x[2]!, value: x[3]! }))
    return { expr: `${m[1]}${by === undefined ? '' : ` by (${by.join(', ')})`} (${metric}${selector})`, op: m[1] as Aggregation['op'], by, metric, matchers }
  })
}

function matches (labels: Record<string, string>, matcher: Matcher): boolean {
  const value = labels[matcher.label] ?? ''
  switch (matcher.op) {
    case '=': return value === matcher.value
    case '!=': return value !== matcher.value
    case '=~': return new RegExp(`^(?:${matcher.value})$`).test(value)
    default: return !new RegExp(`^(?:${matcher.value})$`).test(value)
  }
}

/** Group key as Prometheus prints a result's labels: the `by` labels, empty ones left out. */
function groupKey (labels: Record<string, string>, by: string[] | undefined): string {
  return JSON.stringify((by ?? []).filter((l) => (labels[l] ?? '') !== '').sort().map((l) => [l, labels[l]]))
}

/** The aggregation computed from the instances' own expositions, with the labels Prometheus adds (job, instance). */
function aggregateLocally (agg: Aggregation, expositions: Map<Instance, string>): Map<string, number> {
  const out = new Map<string, number>()
  for (const [instance, text] of expositions) {
    for (const [k, value] of parse(text).samples) {
      const brace = k.indexOf('{')
      if ((brace === -1 ? k : k.slice(0, brace)) !== agg.metric) continue
      const labels = { ...parseLabels(brace === -1 ? undefined : k.slice(brace + 1, -1)), job: JOB, instance: instance.address }
      if (!agg.matchers.every((m) => matches(labels, m))) continue
      const group = groupKey(labels, agg.by)
      const seen = out.get(group)
      out.set(group, seen === undefined ? value : agg.op === 'sum' ? seen + value : Math[agg.op](seen, value))
    }
  }
  return out
}

const isLive = (metric: string): boolean => metric.startsWith('process_') || metric.startsWith('nodejs_')

interface Panel { type: string, title: string, targets?: Array<{ expr: string, refId: string }> }

async function checkPanels (t: Test, prometheus: Prometheus, instances: Instance[]): Promise<void> {
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'dashboards/upstream-dashboard.json'), 'utf8')) as { panels: Panel[] }
  const expositions = new Map<Instance, string>()
  for (const instance of instances) {
    const reply = await get(`${instance.base}/metrics`)
    t.equal(reply.status, 200, `${instance.name} answers /metrics`)
    expositions.set(instance, reply.body)
  }
  const readAt = Date.now()
  const withData = new Set<string>()
  for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
    for (const target of panel.targets ?? []) {
      const found = aggregations(target.expr)
      t.ok(found.length > 0, `panel "${panel.title}" ${target.refId}: its aggregations are understood: ${target.expr}`)
      for (const agg of found) {
        const local = aggregateLocally(agg, expositions)
        const answer = await prometheus.query(agg.expr)
        const remote = new Map(answer.map((s) => [groupKey(s.metric, agg.by), Number(s.value[1])]))
        const label = `panel "${panel.title}" ${target.refId}: ${agg.expr}`
        t.same([...remote.keys()].sort(), [...local.keys()].sort(), `${label}: the same series as the instances'`)
        if (remote.size > 0) withData.add(panel.title)
        if (!isLive(agg.metric)) {
          t.same(Object.fromEntries(remote), Object.fromEntries(local), `${label}: equals the sum over the instances' /metrics`)
          continue
        }
        for (const [group, own] of local) {
          const scraped = remote.get(group)
          if (scraped === undefined) continue
          const [sample] = await prometheus.query(`timestamp(${agg.metric})`)
          const seconds = Math.max(0, readAt / 1000 - Number(sample?.value[1] ?? 0)) + 1
          if (agg.metric.endsWith('_seconds_total')) t.ok(Math.abs(own - scraped) <= 2 * seconds * instances.length, `${label} ${group}: ${scraped} vs ${own} CPU seconds`)
          else if (agg.metric.endsWith('_bytes')) t.ok(own / scraped < 2 && scraped / own < 2, `${label} ${group}: ${scraped} vs ${own} bytes`)
        }
      }
    }
  }
  for (const title of ['HTTP request rate', 'Request latency (p95)', 'Error rates (4xx, 5xx)', 'Responses by status', 'Requests by view',
    'Exceptions by type', 'Database query counts', 'Database query latency (p95)', 'Database errors', 'New database connections',
    'Model writes', 'Unapplied migrations', 'Cache hit ratio', 'Cache gets', 'Process CPU', 'Memory']) {
    t.ok(withData.has(title), `panel "${title}" had data to compare`)
  }
}

/** Status counts of one instance's responses, from its own /metrics. */
async function statuses (instance: Instance): Promise<{ total: number, errors: number }> {
  const { samples } = parse((await get(`${instance.base}/metrics`)).body)
  let total = 0
  let errors = 0
  for (const [k, value] of samples) {
    const m = /^django_http_responses_total_by_status_total\{status="(\d+)"\}$/.exec(k)
    if (m === null) continue
    total += value
    if (m[1]!.startsWith('5')) errors += value
  }
  return { total, errors }
}

/**
 * Rounds of requests until `durationMs`: per round, `share[i] × 10` requests to instance i, of which the failing
 * instance's are 30 % failures; a round's requests interleave the instances, six at a time (a few pool connections each).
 */
async function shapedTraffic (t: Test, instances: Instance[], failing: Instance, shares: number[], durationMs: number): Promise<void> {
  const deadline = Date.now() + durationMs
  for (let round = 0; round < 200 && Date.now() < deadline; round++) {
    const queue: Array<{ instance: Instance, fail: boolean }> = []
    const counts = shares.map((share) => share * 10)
    for (let r = 0; r < Math.max(...counts); r++) {
      instances.forEach((instance, i) => {
        if (r < counts[i]!) queue.push({ instance, fail: instance === failing && r % 10 < 3 })
      })
    }
    const send = async (): Promise<void> => {
      for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
        const route = next.fail ? FAILING_ROUTE : OK_ROUTE
        const reply = await get(`${next.instance.base}${route}`)
        if (reply.status !== (next.fail ? 500 : 200)) t.fail(`${next.instance.name} ${route}: ${reply.status}`)
      }
    }
    await Promise.all(Array.from({ length: 6 }, send))
  }
}

async function highErrorRate (prometheus: Prometheus): Promise<{ state: string | undefined, firing: boolean, everFiring: boolean, ratio: number | undefined }> {
  const rule = (await prometheus.rules()).find((r) => r.name === 'HighErrorRate')
  const firing = (await prometheus.query(`ALERTS{alertname="HighErrorRate",alertstate="firing",job="${JOB}"}`)).length > 0
  const everFiring = (await prometheus.query('max_over_time(ALERTS{alertname="HighErrorRate",alertstate="firing"}[5m])')).length > 0
  const rules = parseYaml(readFileSync(join(ROOT, 'alerts/upstream.yml'), 'utf8'))
  const expr = (rules.groups[0].rules as Array<{ alert: string, expr: string }>).find((r) => r.alert === 'HighErrorRate')!.expr
  const [ratio] = await prometheus.query(expr.trim().replace(/\s*>\s*[\d.]+$/, ''))
  return { state: rule?.state, firing, everFiring, ratio: ratio === undefined ? undefined : Number(ratio.value[1]) }
}

async function checkAlert (t: Test, instances: Instance[], failing: Instance): Promise<void> {
  const others = instances.filter((i) => i !== failing)
  const shares = instances.map(() => 1)
  // Fires: the same traffic to each instance, the failing one answering 30 % with 500s: 10 % for the job.
  {
    const prometheus = await prometheusFor(t, instances)
    const before = await Promise.all(instances.map(statuses))
    let state = await highErrorRate(prometheus)
    const start = Date.now()
    const traffic = (async () => {
      while (!state.firing && Date.now() - start < 25_000) {
        await shapedTraffic(t, instances, failing, shares, 1000)
        state = await highErrorRate(prometheus)
      }
    })()
    await traffic
    const after = await Promise.all(instances.map(statuses))
    const delta = instances.map((_, i) => ({ total: after[i]!.total - before[i]!.total, errors: after[i]!.errors - before[i]!.errors }))
    t.equal(delta[instances.indexOf(failing)]!.errors / delta[instances.indexOf(failing)]!.total, 0.3, `${failing.name} failed 30 % of its requests`)
    for (const other of others) t.equal(delta[instances.indexOf(other)]!.errors, 0, `${other.name} failed none`)
    t.comment(`${failing.name} failing: fired after ${Date.now() - start} ms of traffic`)
    t.ok(state.firing, `HighErrorRate fires for job ${JOB} (job ratio ${state.ratio}, rule ${state.state})`)
    t.ok(state.ratio !== undefined && state.ratio > 0.05, `the job's ratio ${state.ratio} is above 5 %`)
    await prometheus.stop()
  }
  // Does not fire: a tenth of the traffic to the failing instance: 3 % for the job.
  {
    const prometheus = await prometheusFor(t, instances)
    await shapedTraffic(t, instances, failing, instances.map((i) => i === failing ? 1 : 9 / others.length), 3000)
    const scraped = await prometheus.scrapedAfter(JOB, Date.now(), instances.length)
    // Every evaluation until the shortened `for:` has passed on the complete data.
    await waitFor('the rule to be evaluated past its for: on the complete data', async () => {
      const rule = (await prometheus.rules()).find((r) => r.name === 'HighErrorRate')
      return rule !== undefined && Date.parse(rule.lastEvaluation) > scraped + 4000
    }, { timeoutMs: 15_000, details: prometheus.output })
    const state = await highErrorRate(prometheus)
    t.comment(`${failing.name} failing, a tenth of the traffic: not firing, job ratio ${state.ratio}`)
    t.ok(state.ratio !== undefined && state.ratio > 0 && state.ratio < 0.05, `the job's ratio ${state.ratio} is above 0 and below 5 %`)
    t.equal(state.state, 'inactive', 'HighErrorRate is inactive')
    t.notOk(state.everFiring, 'HighErrorRate never fired during the scenario')
    await prometheus.stop()
  }
}

async function checkReplicas (t: Test, instances: Instance[]): Promise<void> {
  const prometheus = await prometheusFor(t, instances)
  const before = await Promise.all(instances.map(statuses))
  // A count of requests per instance, not a time window: on a loaded machine 3 s may hold fewer than 20.
  // The duration is only a bound on hanging.
  const runs = await Promise.all(instances.map(async (instance) => await generateTraffic({ baseUrl: instance.base, durationMs: 120_000, maxRequests: 60, concurrency: 2 }) as { requests: number, failures: number }))
  for (const [i, run] of runs.entries()) t.ok(run.requests > 20 && run.failures === 0, `${instances[i]!.name} served its share: ${JSON.stringify(run)}`)
  // Each instance's own totals are right (a cluster's too: every worker's responses): the panels compare against them.
  const after = await Promise.all(instances.map(statuses))
  for (const [i, run] of runs.entries()) t.equal(after[i]!.total - before[i]!.total, run.requests, `${instances[i]!.name} counted every response it sent`)
  // A whole scrape interval after the last answer, every target scraped: every count is in Prometheus.
  await prometheus.scrapedAfter(JOB, Date.now() + 1000, instances.length)
  await checkPanels(t, prometheus, instances)
  await prometheus.stop()
}

t.test('three replicas as one job: the dashboard adds up, HighErrorRate fires for the job', async (t) => {
  const started = Date.now()
  const phase = (name: string) => t.comment(`${name} at ${((Date.now() - started) / 1000).toFixed(1)} s`)
  const databaseUrl = await ownDatabase(t)
  // Two sets of three targets on the one database, checked side by side, each with its own Prometheus servers.
  const [replicas, mixed] = await Promise.all([
    Promise.all([1, 2, 3].map(async (n) => await startInstance(t, `replica-${n}`, databaseUrl))),
    Promise.all([startInstance(t, 'cluster-of-4', databaseUrl, 4), startInstance(t, 'replica-4', databaseUrl), startInstance(t, 'replica-5', databaseUrl)])
  ])
  phase('instances up')
  await Promise.all([
    (async () => {
      await checkReplicas(t, replicas)
      phase('three single-process replicas: panels checked')
      await checkAlert(t, replicas, replicas[1]!)
      phase('three single-process replicas: alert checked')
    })(),
    (async () => {
      await checkReplicas(t, mixed)
      phase('one target a cluster of four workers: panels checked')
      await checkAlert(t, mixed, mixed[0]!)
      phase('one target a cluster of four workers: alert checked')
    })()
  ])
})
