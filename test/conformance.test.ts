// Conformance with the real django-prometheus: a Django 3.2 project using django-prometheus 2.2
// as its README says (test/conformance/django, under gunicorn) and its Fastify twin on this plugin
// (test/conformance/twin) get the same requests in the same order; their scrapes are compared family
// by family. Every difference must be in ALLOWED, with its reason; the table goes to docs/metrics.md
// (CONFORMANCE_WRITE_DOCS=1 npx tap test/conformance.test.ts rewrites it).
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { DJANGO_LATENCY_BUCKETS } from '../lib/names'
import {
  DEBIAN_PACKAGES, ROOT, checkPythonStack, deleteKeys, dropDatabase, freshDatabase, redisUrl, startDjango, startTwin, type App
} from './conformance/apps'
import {
  compareScrape, familyTable, markdownTable, parseFamilies, plainTable,
  type Allowance, type Families, type Family, type FamilyResult, type ScrapeContext, type Side
} from './conformance/compare'
import { conformanceRequests, type ConformanceRequest } from './conformance/requests'
import { freePort, send } from './helpers/net'

/** prometheus_client's default Histogram buckets, as it prints them. */
const PROMETHEUS_CLIENT_BUCKETS = ['0.005', '0.01', '0.025', '0.05', '0.075', '0.1', '0.25', '0.5', '0.75', '1.0', '2.5', '5.0', '7.5', '10.0', '+Inf']
const pythonFloat = (n: number): string => Number.isInteger(n) ? `${n}.0` : String(n)
const PLUGIN_LATENCY_BUCKETS = [...DJANGO_LATENCY_BUCKETS.map(pythonFloat), '+Inf']

function mapSamples (family: Family, change: (sample: Family['samples'][number]) => Family['samples'][number]): Family {
  return { ...family, samples: family.samples.map(change) }
}

/** Each sample minus its value in the side's first scrape (taken before any request). */
function sinceBaseline (family: Family, side: Side, context: ScrapeContext): Family {
  const before = context.baseline[side].get(family.name)?.samples ?? []
  const id = (s: Family['samples'][number]): string => `${s.name}${JSON.stringify(Object.entries(s.labels).sort())}`
  const start = new Map(before.map((s) => [id(s), s.value]))
  return mapSamples(family, (s) => ({ ...s, value: s.value - (start.get(id(s)) ?? 0) }))
}

/** The response-size histogram without the observations of the earlier scrapes. */
function withoutScrapes (family: Family, side: Side, context: ScrapeContext): Family {
  const sizes = context.scrapeBytes[side]
  return mapSamples(family, (s) => {
    if (s.name.endsWith('_count')) return { ...s, value: s.value - sizes.length }
    if (s.name.endsWith('_sum')) return { ...s, value: s.value - sizes.reduce((a, b) => a + b, 0) }
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le)
    return { ...s, value: s.value - sizes.filter((size) => size <= le).length }
  })
}

/**
 * Every difference allowed between django-prometheus 2.2 and the plugin, with its reason.
 * Nothing else may differ, and each entry must still explain something (else remove it).
 */
const ALLOWED: Allowance[] = [
  {
    families: /^python_/,
    aspects: ['missing'],
    reason: 'prometheus_client\'s Python runtime collectors; the plugin reports the Node.js runtime instead (`nodejs_*`).'
  },
  {
    families: /^nodejs_/,
    aspects: ['extra'],
    reason: 'The Node.js runtime, in place of `python_*`.'
  },
  {
    families: /_created$/,
    aspects: ['value'],
    measured: true,
    reason: 'Creation times (each series\' start time, in seconds) of two different processes; names, TYPE, HELP and series are compared.'
  },
  {
    families: /^django_(db_query|cache_hits|cache_misses)_(total|created)$/,
    aspects: ['extra'],
    reason: 'The seed monitoring guide\'s names, exposed beside django-prometheus\'s with the same series.'
  },
  {
    families: /^process_/,
    aspects: ['value'],
    measured: true,
    reason: 'Values of two different processes; names, TYPE and HELP are compared.'
  },
  {
    families: /_seconds/,
    aspects: ['duration'],
    measured: true,
    reason: 'Latencies measured in two processes: counts are compared, durations are not.'
  },
  {
    families: /^(django_http_requests_latency_including_middlewares_seconds|django_db_query_duration_seconds)$/,
    aspects: ['buckets'],
    when: (d) => d.detail === `le ${PROMETHEUS_CLIENT_BUCKETS.join(',')} / ${PLUGIN_LATENCY_BUCKETS.join(',')}`,
    reason: 'django-prometheus 2.2 (Debian\'s) gives these two histograms prometheus_client\'s default buckets; since 2.3 they use `PROMETHEUS_LATENCY_BUCKETS`, which the plugin follows (`latencyBuckets`).'
  },
  {
    families: /^django_db_(execute_total|query_duration_seconds)$/,
    adjust: sinceBaseline,
    reason: 'Statements sent at startup differ (Django\'s migration check introspects its tables, the plugin reads `pgmigrations`): compared from the first scrape on, where every request\'s statements must be counted alike.'
  },
  {
    families: /^django_db_new_connections_total$/,
    adjust: (family, side, context) => side === 'django' ? family : mapSamples(family, (s) => ({ ...s, value: s.value - context.failedQueries })),
    reason: 'pg.Pool closes a connection whose `pool.query` failed and opens a new one; Django keeps its connection after an IntegrityError. The plugin counts one connection more per failed query.'
  },
  {
    families: /^django_model_inserts_total$/,
    adjust: (family, side, context) => side === 'plugin' ? family : mapSamples(family, (s) => s.labels.model === 'claim' ? { ...s, value: s.value - context.failedInserts } : s),
    reason: 'The mixin counts the `save()` call before the INSERT runs, so a duplicate-key insert counts; the plugin counts rows a statement inserted.'
  },
  {
    families: /^django_http_exceptions_total_by_type_(total|created)$/,
    adjust: (family, side) => side === 'django' ? family : mapSamples(family, (s) => s.labels.type === 'RangeError' ? { ...s, labels: { ...s.labels, type: 'ValueError' } } : s),
    reason: 'Exception classes are each language\'s: the view raising Python\'s `ValueError` throws JavaScript\'s `RangeError` in the twin.'
  },
  {
    families: /^django_migrations_(applied|unapplied)_total$/,
    aspects: ['type'],
    when: (d) => d.detail === 'TYPE gauge / untyped',
    reason: '`promtool check metrics` rejects a gauge named `…_total`; the plugin declares these two `untyped` (Prometheus stores both alike).'
  },
  {
    families: /^django_http_responses_body_total_bytes$/,
    adjust: withoutScrapes,
    reason: 'The earlier scrapes are responses too and the two expositions differ in length; their observations are taken out, every other response must be observed alike.'
  }
]

const DOCS = join(ROOT, 'docs', 'metrics.md')
const DOCS_START = '<!-- conformance-table:start (generated by test/conformance.test.ts; CONFORMANCE_WRITE_DOCS=1 npx tap test/conformance.test.ts) -->'
const DOCS_END = '<!-- conformance-table:end -->'

/** Table rows: one per family, the language runtimes and `_created` gathered in one row each. */
function groupOf (family: string): string {
  if (family.startsWith('python_')) return 'python_*'
  if (family.startsWith('nodejs_')) return 'nodejs_*'
  if (family.endsWith('_created')) return '*_created'
  return family
}

interface Answer { status: number, bytes: number, body: Buffer, length: string | undefined }

/**
 * HEAD over a bare socket: gunicorn 20 sends Django's body after a HEAD response's headers,
 * which Node's HTTP client refuses to parse. Only the status and Content-Length are kept.
 */
async function head (base: string, path: string): Promise<Answer> {
  const { hostname, port } = new URL(base)
  return await new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    const chunks: Buffer[] = []
    socket.setTimeout(30_000, () => socket.destroy(new Error(`timeout: HEAD ${path}`)))
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', reject)
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('latin1')
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)
      resolve({ status, bytes: 0, body: Buffer.alloc(0), length: /\r\ncontent-length: *(\d+)/i.exec(text)?.[1] })
    })
    socket.end(`HEAD ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n\r\n`)
  })
}

async function play (app: App, requests: ConformanceRequest[]): Promise<Answer[]> {
  const answers: Answer[] = []
  for (const r of requests) {
    try {
      if (r.method === 'HEAD') {
        answers.push(await head(app.base, r.path))
        continue
      }
      const reply = await send(app.base + r.path, { method: r.method, headers: r.headers, body: r.body, timeoutMs: 30_000 })
      const length = reply.headers['content-length']
      answers.push({ status: reply.status, bytes: reply.body.length, body: reply.body, length: Array.isArray(length) ? length[0] : length })
    } catch (err) {
      throw new Error(`${app.name}: ${r.method} ${r.path}: ${(err as Error).message}\n${app.output()}`)
    }
  }
  return answers
}

t.test('the comparison flags every difference that ALLOWED does not explain', async (t) => {
  const django = parseFamilies([
    '# HELP django_http_ajax_requests_total Count of AJAX requests.', '# TYPE django_http_ajax_requests_total counter', 'django_http_ajax_requests_total 2.0',
    '# HELP django_http_ajax_requests_created Count of AJAX requests.', '# TYPE django_http_ajax_requests_created gauge', 'django_http_ajax_requests_created 1.7e+09',
    '# HELP django_cache_get_total Total get requests on cache', '# TYPE django_cache_get_total counter', 'django_cache_get_total{backend="redis"} 1.0'
  ].join('\n'))
  const plugin = parseFamilies([
    '# HELP django_http_ajax_requests_total Count of AJAX requests', '# TYPE django_http_ajax_requests_total counter', 'django_http_ajax_requests_total 3.0',
    '# HELP django_http_ajax_requests_created Count of AJAX requests.', '# TYPE django_http_ajax_requests_created gauge', 'django_http_ajax_requests_created 1.8e+09',
    '# HELP django_cache_get_total Total get requests on cache', '# TYPE django_cache_get_total counter', 'django_cache_get_total{backend="locmem"} 1.0'
  ].join('\n'))
  const context: ScrapeContext = { scrape: 'end', baseline: { django: new Map(), plugin: new Map() }, scrapeBytes: { django: [], plugin: [] }, failedInserts: 0, failedQueries: 0 }
  const used = new Set<Allowance>()
  const results = compareScrape(context, django, plugin, ALLOWED, used)
  const unexplained = results.flatMap((r) => r.unexplained.map((d) => `${d.family} ${d.aspect}`))
  t.same(unexplained.sort(), ['django_cache_get_total series', 'django_cache_get_total series', 'django_http_ajax_requests_total help', 'django_http_ajax_requests_total value'], 'a HELP, a value and two label values differ')
  t.same([...used].map((a) => a.families.source), ['_created$'], 'the _created value (a creation time) is allowed, and only that')
})

t.test('the plugin exposes what django-prometheus 2.2 exposes for the same requests', async (t) => {
  const stack = await checkPythonStack()
  if (stack.missing.length > 0) {
    t.fail(`conformance test: missing Debian packages ${stack.missing.join(' ')} (it needs: apt-get install -y ${DEBIAN_PACKAGES.map(([, p]) => p).join(' ')})`)
    return
  }
  t.ok(existsSync(join(ROOT, 'dist/entry.mjs')), 'the plugin is built (npm run build)')
  t.comment(`django side: ${stack.versions}`)

  const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
  const keyPrefix = `um-conformance-${process.pid}`
  const redis = { django: redisUrl(11), twin: redisUrl(12) }
  const [djangoPort, twinPort, downPort] = [await freePort(), await freePort(), await freePort()]
  const databases: string[] = []
  const apps: App[] = []
  t.teardown(async () => {
    for (const app of apps) await app.stop()
    for (const name of databases) await dropDatabase(databaseUrl, name).catch(() => {})
    for (const url of Object.values(redis)) await deleteKeys(url, keyPrefix).catch(() => {})
  })

  // One after the other: two CREATE DATABASE at once can find template1 busy.
  const djangoDb = await freshDatabase(databaseUrl, 'django')
  databases.push(djangoDb.name)
  const twinDb = await freshDatabase(databaseUrl, 'twin')
  databases.push(twinDb.name)
  const started = (app: App): void => { apps.push(app) }
  const [django, twin] = await Promise.all([
    startDjango({ database: djangoDb, redisUrl: redis.django, redisDownPort: downPort, keyPrefix, port: djangoPort, started }),
    startTwin({ database: twinDb, redisUrl: redis.twin, redisDownPort: downPort, keyPrefix, port: twinPort, started })
  ])

  const scrape = (name: string): ConformanceRequest => ({ method: 'GET', path: '/metrics', expect: 200, scrape: name })
  const requests = [scrape('start'), ...conformanceRequests(), scrape('end')]
  const [djangoAnswers, twinAnswers] = await Promise.all([play(django, requests), play(twin, requests)])
  t.comment(`${requests.length} requests sent to each app`)

  const mismatches: string[] = []
  requests.forEach((r, i) => {
    const [d, p] = [djangoAnswers[i]!, twinAnswers[i]!]
    if (d.status !== r.expect || p.status !== r.expect) mismatches.push(`#${i} ${r.method} ${r.path}: status ${d.status} / ${p.status}, expected ${r.expect}`)
    else if (r.scrape === undefined && r.method === 'HEAD' && d.length !== p.length) mismatches.push(`#${i} HEAD ${r.path}: Content-Length ${d.length} / ${p.length}`)
    else if (r.scrape === undefined && !d.body.equals(p.body)) mismatches.push(`#${i} ${r.method} ${r.path}: bodies differ (${d.bytes} / ${p.bytes} bytes)`)
  })
  t.same(mismatches, [], 'the two apps answer every request alike (status and body)')

  const scrapes = requests.flatMap((r, i) => r.scrape === undefined ? [] : [{ name: r.scrape, at: i }])
  const parsed = (answers: Answer[], i: number): Families => parseFamilies(answers[i]!.body.toString('utf8'))
  const baseline = { django: parsed(djangoAnswers, scrapes[0]!.at), plugin: parsed(twinAnswers, scrapes[0]!.at) }
  const results: FamilyResult[] = []
  const used = new Set<Allowance>()
  for (const { name, at } of scrapes) {
    const earlier = scrapes.filter((s) => s.at < at).map((s) => s.at)
    const context: ScrapeContext = {
      scrape: name,
      baseline,
      scrapeBytes: { django: earlier.map((i) => djangoAnswers[i]!.bytes), plugin: earlier.map((i) => twinAnswers[i]!.bytes) },
      failedInserts: requests.slice(0, at).filter((r) => r.method === 'POST' && r.path === '/claims' && r.expect === 409).length,
      failedQueries: requests.slice(0, at).filter((r) => (r.method === 'POST' && r.path === '/claims' && r.expect === 409) || r.path === '/duplicate').length
    }
    results.push(...compareScrape(context, parsed(djangoAnswers, at), parsed(twinAnswers, at), ALLOWED, used))
  }

  // django-prometheus's own families first (in its order), then the plugin's other names, the groups, process_*.
  const djangoFamilies = [...parsed(djangoAnswers, scrapes.at(-1)!.at).keys()].filter((f) => f.startsWith('django_') && !f.endsWith('_created'))
  const rowOrder = (row: string): number => djangoFamilies.includes(row) ? 0 : row.startsWith('process_') ? 3 : row.includes('*') ? 2 : 1
  const rows = familyTable(results, groupOf).sort((a, b) => rowOrder(a.family) - rowOrder(b.family))
  const upstream = rows.filter((r) => djangoFamilies.includes(r.family))
  const count = (status: string): number => upstream.filter((r) => r.status === status).length
  const summary = `${count('match')} of ${upstream.length} django-prometheus families match exactly, ${count('differs (allowed)')} differ as listed, ${count('differs')} differ otherwise.`
  t.comment(`family table (scrapes: ${scrapes.map((s) => s.name).join(', ')})\n${plainTable(rows)}\n${summary}`)

  const unexplained = results.flatMap((r) => r.unexplained)
  if (unexplained.length > 0) t.comment(`differences not in ALLOWED (scrape | family | detail):\n${unexplained.slice(0, 80).map((d) => `${d.scrape} | ${d.family} | ${d.detail}`).join('\n')}`)
  for (const row of rows) if (row.status === 'differs') t.fail(`${row.family}: ${row.why}`)
  t.equal(rows.filter((r) => r.status === 'differs').length, 0, 'every family matches or differs only as ALLOWED says')
  // An entry that explained nothing, in families that otherwise agree, is no longer needed.
  const troubled = new Set(unexplained.map((d) => d.family))
  for (const allowance of ALLOWED) {
    if (!used.has(allowance) && ![...troubled].some((f) => allowance.families.test(f))) t.fail(`an allowed difference no longer occurs (remove it from ALLOWED): ${allowance.families} ${allowance.reason}`)
  }

  const section = `${summary}\n\n${markdownTable(rows)}`
  const docs = readFileSync(DOCS, 'utf8')
  const [start, end] = [docs.indexOf(DOCS_START), docs.indexOf(DOCS_END)]
  t.ok(start !== -1 && end > start, 'docs/metrics.md has the conformance-table markers')
  const updated = `${docs.slice(0, start + DOCS_START.length)}\n${section}\n${docs.slice(end)}`
  if (process.env.CONFORMANCE_WRITE_DOCS === '1') writeFileSync(DOCS, updated)
  else t.equal(docs, updated, 'the conformance table in docs/metrics.md is current (CONFORMANCE_WRITE_DOCS=1 npx tap test/conformance.test.ts)')
})
