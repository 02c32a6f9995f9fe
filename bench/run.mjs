// npm run bench [-- --quick] [--no-build] [--only=cpu,scrape,formats,rss,pg,otlp] [--rate=N] [--rounds=N] [--unpaired] [--setups=a,b] [--help]
// Writes bench/RESULTS.md. Figures are ratios within one run: the machine may be shared.
import { execFileSync, fork } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'

const here = fileURLToPath(new URL('.', import.meta.url))
const root = fileURLToPath(new URL('..', import.meta.url))
const args = process.argv.slice(2)
const flag = (name) => args.includes(`--${name}`)
const value = (name, fallback) => {
  const found = args.find((a) => a.startsWith(`--${name}=`))
  return found === undefined ? fallback : found.slice(name.length + 3)
}
if (flag('help')) {
  console.log(`npm run bench [-- options]: writes bench/RESULTS.md and the results in docs/performance.md (see that page).
  --quick          fewer rounds, shorter windows, 200,000 requests in the memory check (~4 min instead of ~10)
  --no-build       use the current dist/
  --only=LIST      sections among cpu,scrape,formats,rss,pg,otlp (default: all)
  --rate=N         req/s per server in the CPU section (default 5000; 3000 quick)
  --rounds=N       CPU rounds (default 7; 3 quick)
  --unpaired       one server at a time instead of side by side with its base
  --setups=LIST    CPU setups besides bare (default plugin,fastify-metrics,plugin+runtime,plugin+semconv,plugin+tracing);
                   also plugin-noexemplars, empty-hooks, req-hook, res-hook, load:<module>
  --rss-requests=N requests in the memory check (default 1,000,000; 200,000 quick)`)
  process.exit(0)
}
const quick = flag('quick')
const only = new Set(value('only', 'cpu,scrape,formats,rss,pg,otlp').split(','))
const config = {
  rate: Number(value('rate', quick ? 3000 : 5000)),
  rounds: Number(value('rounds', quick ? 3 : 7)),
  paired: !flag('unpaired'),
  warmupSeconds: quick ? 2 : 3,
  measureSeconds: quick ? 4 : 8,
  scrapeIterations: quick ? 10 : 25,
  rssRequests: Number(value('rss-requests', quick ? 200_000 : 1_000_000)),
  rssWarmup: quick ? 50_000 : 100_000
}
const SETUPS = [...new Set(['bare', ...value('setups', 'plugin,empty-hooks,fastify-metrics,plugin+runtime,plugin+semconv,plugin+tracing').split(',')])]
const TRACING = "the app's own tracing (AsyncLocalStorage context, every request sampled, a span per request active around the handler, spans dropped)"
const LABELS = {
  bare: 'bare Fastify',
  plugin: 'upstream-metrics, all HTTP metrics (runtimeMetrics: false; exemplars on, no active span)',
  'plugin-noexemplars': 'upstream-metrics, all HTTP metrics, exemplars: false',
  'fastify-metrics': 'fastify-metrics 14 (anchor; default route metrics, no default metrics)',
  'plugin+runtime': 'upstream-metrics, all HTTP metrics + runtime metrics',
  'plugin+semconv': 'upstream-metrics, all HTTP metrics + http.server.request.duration (http.semconvMetrics)',
  'bare+tracing': 'bare Fastify + the app\'s tracing',
  'plugin+tracing': 'upstream-metrics, all HTTP metrics, exemplars on + the app\'s tracing',
  'plugin+tracing-noexemplars': 'upstream-metrics, all HTTP metrics, exemplars: false + the app\'s tracing',
  'empty-hooks': 'bare Fastify + three empty hooks (onRequest, onResponse, onError)',
  'req-hook': 'bare Fastify + one empty onRequest hook',
  'res-hook': 'bare Fastify + one empty onResponse hook'
}
/**
 * The servers a setup runs beside, the first being the base its ratio is to. The tracing setups run as three at
 * once, all with the same tracing: their ratio to the base is the plugin's cost under tracing, and exemplars on
 * over off in the same window is the exemplars' own cost.
 */
const WINDOWS = { 'plugin+tracing': ['bare+tracing', 'plugin+tracing', 'plugin+tracing-noexemplars'] }
const windowOf = (setup) => WINDOWS[setup] ?? ['bare', setup]

if (!flag('no-build')) execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' })

const cores = availableParallelism()
const taskset = existsSync('/usr/bin/taskset') || existsSync('/bin/taskset')
const serverCore = cores - 1

function median (xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const spread = (xs, digits = 1) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`
const log = (...xs) => console.error(...xs)

/** Starts bench/server.mjs pinned to the last core; resolves with a small IPC client. */
function startServer (setup, execArgv = []) {
  const child = fork(`${here}server.mjs`, [setup], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  if (taskset) {
    try {
      execFileSync('taskset', ['-a', '-p', '-c', String(serverCore), String(child.pid)], { stdio: 'ignore' })
    } catch {}
  }
  const ask = (message) => new Promise((resolve) => {
    child.once('message', resolve)
    child.send(message)
  })
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('message', ({ port }) => resolve({ port, ask, stop: () => new Promise((resolve) => { child.once('exit', resolve); child.send('exit') }) }))
  })
}

const PATHS = [
  { method: 'GET', path: '/' },
  { method: 'GET', path: '/api/items/42' },
  { method: 'POST', path: '/api/users/7/orders', body: '{"sku":"a-1","qty":2}', headers: { 'content-type': 'application/json' } }
]

function load (port, options) {
  return new Promise((resolve, reject) => {
    autocannon({ url: `http://127.0.0.1:${port}`, connections: 16, pipelining: 1, ...options }, (err, result) => err ? reject(err) : resolve(result))
  })
}

/**
 * Each server's rate in a window of `servers`: autocannon drives every server of a window from this one process,
 * which could not keep three at the full rate (a traced window fell to 4,769 req/s), so a window of three runs at 4/5.
 */
const rateOf = (servers) => servers > 2 ? Math.round(config.rate * 4 / 5) : config.rate

/** Runs the setups' servers side by side (same core, same rate, same window); one result each. */
async function cpuWindow (setups) {
  const servers = await Promise.all(setups.map((setup) => startServer(setup)))
  const overallRate = rateOf(config.paired ? setups.length : 1)
  await Promise.all(servers.map((server) => load(server.port, { requests: PATHS, overallRate, duration: config.warmupSeconds })))
  const before = await Promise.all(servers.map((server) => server.ask('snapshot')))
  const results = await Promise.all(servers.map((server) => load(server.port, { requests: PATHS, overallRate, duration: config.measureSeconds })))
  const after = await Promise.all(servers.map((server) => server.ask('snapshot')))
  await Promise.all(servers.map((server) => server.stop()))
  return results.map((result, i) => ({
    cpuPerRequest: (after[i].cpu - before[i].cpu) / (after[i].served - before[i].served),
    rps: result.requests.average,
    p99: result.latency.p99,
    rssMb: after[i].rss / 1048576,
    errors: result.errors + result.non2xx
  }))
}

async function cpuBench () {
  const windows = SETUPS.filter((s) => s !== 'bare').map(windowOf)
  const members = [...new Set(['bare', ...windows.flat()])]
  const baseOf = Object.fromEntries(windows.flatMap((w) => w.map((s) => [s, w[0]])))
  const runs = Object.fromEntries(members.map((s) => [s, []]))
  /** Per setup, its CPU per request divided by its base's measured in the same window (paired) or round. */
  const ratioRuns = Object.fromEntries(members.map((s) => [s, []]))
  /** Per setup, the µs per request it adds to its base in the same window or round. */
  const addedRuns = Object.fromEntries(members.map((s) => [s, []]))
  /** Exemplars on over off, both under tracing, in the same window or round. */
  const exemplarRuns = []
  const compare = (inWindow) => {
    for (const [setup, r] of Object.entries(inWindow)) {
      const base = inWindow[baseOf[setup]]
      if (base === undefined || setup === baseOf[setup]) continue
      ratioRuns[setup].push(r.cpuPerRequest / base.cpuPerRequest)
      addedRuns[setup].push(r.cpuPerRequest - base.cpuPerRequest)
    }
    const on = inWindow['plugin+tracing']
    const off = inWindow['plugin+tracing-noexemplars']
    if (on !== undefined && off !== undefined) exemplarRuns.push(on.cpuPerRequest / off.cpuPerRequest)
  }
  for (let round = 0; round < config.rounds; round++) {
    // Interleaved, and the order rotates each round so no setup always runs first.
    const order = windows.map((_, i) => windows[(i + round) % windows.length])
    if (config.paired) {
      // Each setup runs at the same time as its base: drifting load from other work hits both.
      for (const window of order) {
        const results = await cpuWindow(window)
        const inWindow = Object.fromEntries(window.map((setup, i) => [setup, results[i]]))
        for (const [setup, r] of Object.entries(inWindow)) runs[setup].push(r)
        compare(inWindow)
        log(`cpu round ${round + 1}/${config.rounds} ${window.slice(1).map((s) => `${s}: ${inWindow[s].cpuPerRequest.toFixed(1)} µs/req, ${inWindow[s].rps.toFixed(0)} req/s, p99 ${inWindow[s].p99} ms`).join('; ')} ` +
          `vs ${window[0]} ${inWindow[window[0]].cpuPerRequest.toFixed(1)}`)
      }
    } else {
      const inRound = {}
      const alone = [...new Set(order.flat())].filter((s) => s !== 'bare')
      for (const setup of round % 2 === 0 ? ['bare', ...alone] : [...alone, 'bare']) {
        const [r] = await cpuWindow([setup])
        runs[setup].push(r)
        inRound[setup] = r
        log(`cpu round ${round + 1}/${config.rounds} ${setup}: ${r.cpuPerRequest.toFixed(1)} µs/req, ${r.rps.toFixed(0)} req/s, p99 ${r.p99} ms`)
      }
      compare(inRound)
    }
  }
  const rows = members.map((setup) => {
    const rs = runs[setup]
    const cpu = rs.map((r) => r.cpuPerRequest)
    const base = baseOf[setup] ?? 'bare'
    const vs = setup === base ? '1.00' : spread(ratioRuns[setup], 2)
    return `| ${LABELS[setup] ?? (setup.startsWith('load:') ? `bare Fastify + \`${setup.slice(5)}\` loaded, unused` : setup)} | ${spread(cpu)} | ${vs} | ${setup === base ? '—' : LABELS[base]} | ${spread(rs.map((r) => r.rps), 0)} | ${spread(rs.map((r) => r.p99), 0)} | ${spread(rs.map((r) => r.rssMb), 0)} | ${rs.reduce((n, r) => n + r.errors, 0)} |`
  })
  const ratio = (setup) => ratioRuns[setup]?.length ? median(ratioRuns[setup]) : NaN
  const added = (setup) => addedRuns[setup]?.length ? median(addedRuns[setup]) : NaN
  const tracing = members.includes('plugin+tracing')
  return {
    ratios: { plugin: ratio('plugin'), emptyHooks: ratio('empty-hooks'), fastifyMetrics: ratio('fastify-metrics'), runtime: ratio('plugin+runtime') },
    exemplars: tracing
      ? { onOverOff: median(exemplarRuns), offAdded: added('plugin+tracing-noexemplars'), pluginAdded: added('plugin'), bare: median(runs.bare.map((r) => r.cpuPerRequest)) }
      : undefined,
    markdown: [
      `Fixed rate ${config.rate} req/s (autocannon, 16 connections, GET /, GET /api/items/42, POST /api/users/7/orders in turn), ` +
      `${config.warmupSeconds} s warm-up then ${config.measureSeconds} s measured, ${config.rounds} interleaved rounds, ` +
      `server ${taskset ? `pinned to core ${serverCore} with taskset` : 'not pinned (no taskset)'}. ` +
      (config.paired
        ? 'Paired: each setup\'s server runs at the same time as its base (same core, same rate, same window), so load from other work hits both. '
        : '') +
      'CPU is the server process\'s own `process.cpuUsage()` over the measured window divided by the requests it served. ' +
      `"vs base" is the median (min–max) of the ratios to the base named in the next column, measured ${config.paired ? 'in the same window' : 'in the same round'}. ` +
      (tracing
        ? `The "+ the app's tracing" setups run ${TRACING}; their base is bare Fastify with the same tracing, so their ratio is the plugin's own cost in a traced app. ` +
          `Those three run side by side in one window, each at ${rateOf(3)} req/s (one load generator could not keep three servers at ${config.rate}). `
        : '') +
      'Median (min–max).',
      '',
      '| setup | server CPU µs / request | vs base | base | req/s | p99 latency ms | RSS MB | errors |',
      '|---|---|---|---|---|---|---|---|',
      ...rows,
      ...(tracing
        ? ['', `Exemplars' own cost with the app's tracing on (exemplars on over \`exemplars: false\`, ${config.paired ? 'same window' : 'same round'}): ${spread(exemplarRuns, 3)}. ` +
            'µs per request the plugin adds to its base: ' + (addedRuns.plugin?.length ? `by default without tracing ${spread(addedRuns.plugin, 2)}; ` : '') +
            `with \`exemplars: false\` under tracing ${spread(addedRuns['plugin+tracing-noexemplars'], 2)}; with exemplars on under tracing ${spread(addedRuns['plugin+tracing'], 2)}.`]
        : [])
    ].join('\n')
  }
}

function scrapeChild (impl, routes) {
  const out = execFileSync(process.execPath, [`${here}scrape.mjs`, impl, String(routes), String(config.scrapeIterations)], { encoding: 'utf8' })
  return JSON.parse(out.trim().split('\n').pop())
}

async function scrapeBench () {
  const sizes = [1, 250, 500, 1000, 2000]
  const results = []
  for (const routes of sizes) {
    for (const impl of ['plugin', 'prom-client']) {
      const r = scrapeChild(impl, routes)
      results.push(r)
      log(`scrape ${impl} ${routes} routes: ${r.medianMs.toFixed(2)} ms, ${r.samples} samples, ${r.bytes} bytes`)
    }
  }
  const get = (impl, routes) => results.find((r) => r.impl === impl && r.routes === routes)
  const rows = results.map((r) => `| ${r.impl === 'plugin' ? 'upstream-metrics' : 'prom-client 15'} | ${r.routes} | ${r.samples} | ${(r.bytes / 1024).toFixed(0)} KiB | ${r.medianMs.toFixed(2)} (${r.minMs.toFixed(2)}–${r.maxMs.toFixed(2)}) | ${(r.medianMs * 1000 / r.samples).toFixed(2)} |`)
  const p1000 = get('plugin', 1000)
  const c1000 = get('prom-client', 1000)
  const perSample = (r) => r.medianMs / r.samples
  return {
    scrape1000: p1000.medianMs,
    promClient1000: c1000.medianMs,
    growth: perSample(get('plugin', 1000)) / perSample(get('plugin', 250)),
    growth2000: perSample(get('plugin', 2000)) / perSample(get('plugin', 250)),
    markdown: [
      `Each route template gets 10 GET requests over HTTP, then the scrape is timed ${config.scrapeIterations} times in a fresh process ` +
      '(this plugin: `fastify.upstreamMetrics.metrics()`, i.e. collect + serialize, runtimeMetrics false; prom-client: `registry.metrics()` ' +
      'holding the same django HTTP families, labels and buckets). Median (min–max).',
      '',
      '| exporter | route templates | samples | text size | scrape ms | µs / sample |',
      '|---|---|---|---|---|---|',
      ...rows,
      '',
      'Growth, as µs per sample at N routes over µs per sample at 250 routes (1.0 = linear): ' +
      [500, 1000, 2000].map((n) => `${n} routes ${(perSample(get('plugin', n)) / perSample(get('plugin', 250))).toFixed(2)} ` +
        `(prom-client ${(perSample(get('prom-client', n)) / perSample(get('prom-client', 250))).toFixed(2)})`).join(', ') + '.'
    ].join('\n')
  }
}

function randomPath () {
  const id = Math.random().toString(36).slice(2)
  return `/missing/${id}/${Math.floor(Math.random() * 1e9)}?q=${id}`
}

async function rssBench () {
  // V8 sizes its young generation by the allocation rate (new space 16 → 32 MB here, at any point of the run):
  // it starts at that size, so the check sees retained memory, not V8 resizing an arena.
  const server = await startServer('plugin+runtime', ['--expose-gc', '--min-semi-space-size=16', '--max-semi-space-size=16'])
  const requests = [{ method: 'GET', setupRequest: (req) => ({ ...req, path: randomPath() }) }]
  const started = Date.now()
  // The warm-up goes on, up to 10 chunks, until the new space has kept its size for two chunks.
  let warmup = 0
  for (let sizes = []; warmup < 10 * config.rssWarmup && !(sizes.length >= 3 && sizes.at(-1) === sizes.at(-2) && sizes.at(-2) === sizes.at(-3));) {
    await load(server.port, { requests, amount: config.rssWarmup })
    warmup += config.rssWarmup
    sizes.push((await server.ask('settle')).newSpace)
  }
  const points = [{ requests: 0, ...await server.ask('settle') }]
  const steps = 5
  for (let step = 1; step <= steps; step++) {
    await load(server.port, { requests, amount: config.rssRequests / steps })
    points.push({ requests: step * config.rssRequests / steps, ...await server.ask('settle') })
    log(`rss after ${points.at(-1).requests}: ${(points.at(-1).rss / 1048576).toFixed(1)} MB, ${points.at(-1).samples} samples`)
  }
  await server.stop()
  const first = points[0].rss
  const worst = Math.max(...points.map((p) => Math.abs(p.rss - first) / first))
  // The same without V8's young generation, which V8 may still grow with the allocation rate.
  const old = (p) => p.rss - p.newSpace
  const worstOld = Math.max(...points.map((p) => Math.abs(old(p) - old(points[0])) / old(points[0])))
  return {
    worst,
    worstOld,
    markdown: [
      `After ${warmup.toLocaleString('en')} warm-up requests, ${config.rssRequests.toLocaleString('en')} GET requests to random unmatched URLs ` +
      `(autocannon, as fast as it goes; this plugin with default options; the server runs with V8's young generation fixed at the size V8 grows it to under this load (\`--min-semi-space-size=16 --max-semi-space-size=16\`); RSS and heap read after \`gc()\`; took ${((Date.now() - started) / 1000).toFixed(0)} s).`,
      '',
      '| requests after warm-up | RSS MB | vs start | heap used MB | V8 new space MB | samples on /metrics |',
      '|---|---|---|---|---|---|',
      ...points.map((p) => `| ${p.requests.toLocaleString('en')} | ${(p.rss / 1048576).toFixed(1)} | ${((p.rss / first - 1) * 100).toFixed(1)} % | ${(p.heapUsed / 1048576).toFixed(1)} | ${(p.newSpace / 1048576).toFixed(1)} | ${p.samples} |`)
    ].join('\n')
  }
}

const started = new Date()
const sections = {}
if (only.has('cpu')) sections.cpu = await cpuBench()
if (only.has('scrape')) sections.scrape = await scrapeBench()
if (only.has('formats')) sections.formats = formatsBench()
if (only.has('rss')) sections.rss = await rssBench()
if (only.has('pg')) sections.pg = pgBench()
if (only.has('otlp')) sections.otlp = otlpBench()

/** bench/scrape-formats.mjs in a child process: text vs OpenMetrics, `_created` on vs off, gzip levels, at 1,000 routes. */
function formatsBench () {
  const out = execFileSync(process.execPath, [`${here}scrape-formats.mjs`, '1000', String(config.scrapeIterations)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  const r = JSON.parse(out.trim().split('\n').pop())
  const kib = (bytes) => `${(bytes / 1024).toFixed(0)} KiB`
  const pct = (a, b) => `${((a / b - 1) * 100).toFixed(1)} %`
  return {
    scrapeCpuMs: r.scrapeCpuMs,
    markdown: [
      `1,000 route templates, 10 GET requests each, runtimeMetrics and countScrape false; a fresh process. CPU time (user + system, median of ${config.scrapeIterations}, ` +
      'text and OpenMetrics scrapes alternated) of a whole `/metrics` answer through `app.inject()`, and of `zlib.gzipSync` of the text at each level.',
      '',
      '| answer | samples | bytes | CPU ms |',
      '|---|---|---|---|',
      `| text 0.0.4, \`createdSeries: false\` | ${r.noCreated.samples} | ${kib(r.noCreated.textBytes)} | |`,
      `| text 0.0.4 (default: with \`_created\`) | ${r.created.samples} | ${kib(r.created.textBytes)} (${pct(r.created.textBytes, r.noCreated.textBytes)}) | ${r.scrapeCpuMs.text.toFixed(1)} |`,
      `| OpenMetrics 1.0 (with \`_created\`) | ${r.created.samples} | ${kib(r.created.openMetricsBytes)} | ${r.scrapeCpuMs.openMetrics.toFixed(1)} |`,
      ...Object.entries(r.gzipOfText).map(([level, g]) => `| text gzipped, level ${level}${level === '1' ? ' (served)' : ''} | | ${kib(g.bytes)} (${(g.bytes / r.created.textBytes * 100).toFixed(1)} %) | +${g.cpuMs.toFixed(1)} |`)
    ].join('\n')
  }
}

/** bench/otlp.mjs in a child process: CPU per request with push on vs off, one export at 1,000 routes, drops with the receiver down. */
function otlpBench () {
  const out = execFileSync(process.execPath, [`${here}otlp.mjs`, ...(quick ? ['--quick'] : [])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  return { markdown: out.trim() }
}

/** bench/pg.mjs in a child process: CPU per query through pg with and without the plugin (PostgreSQL issue). */
function pgBench () {
  const args = quick ? ['--queries', '2000', '--rounds', '3'] : ['--queries', '4000', '--rounds', '7']
  try {
    const out = execFileSync(process.execPath, [`${here}pg.mjs`, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
    const table = out.split('\n').filter((line) => line.startsWith('|')).join('\n')
    const ratios = [...table.matchAll(/\| ([0-9.]+)× \|/g)].map((m) => Number(m[1]))
    return { markdown: `${out.split('\n')[0]}\n\n${table}`, worst: Math.max(...ratios) }
  } catch (err) {
    console.error(`PostgreSQL bench skipped: ${err.message}`)
    return undefined
  }
}

const status = (ok) => ok ? 'met' : '**not met**'
const targets = []
if (sections.pg) targets.push(`| PostgreSQL: CPU per query ≤ 1.15× plain pg (worst median of the four workloads) | ${sections.pg.worst.toFixed(2)}× | ${status(sections.pg.worst <= 1.15)} |`)
if (sections.cpu && SETUPS.includes('plugin')) {
  const { plugin, emptyHooks, fastifyMetrics, runtime } = sections.cpu.ratios
  targets.push(`| all django HTTP metrics ≤ 1.06× bare CPU / request (median of paired rounds) | ${plugin.toFixed(2)}× | ${status(plugin <= 1.06)} |`)
  if (!Number.isNaN(emptyHooks)) targets.push(`| … against Fastify's hook floor, three empty hooks vs bare in the same run (reported, no target) | ${plugin.toFixed(2)}× vs ${emptyHooks.toFixed(2)}× | — |`)
  if (!Number.isNaN(runtime)) targets.push(`| … with runtime metrics on ≤ 1.07× bare | ${runtime.toFixed(2)}× | ${status(runtime <= 1.07)} |`)
  if (!Number.isNaN(fastifyMetrics)) targets.push(`| below fastify-metrics in the same run | ${plugin.toFixed(2)}× vs ${fastifyMetrics.toFixed(2)}× | ${status(plugin < fastifyMetrics)} |`)
}
if (sections.cpu?.exemplars) {
  // Within noise: the paired rounds of one run spread by about ±5 % of bare Fastify's CPU per request.
  const { offAdded, pluginAdded, bare, onOverOff } = sections.cpu.exemplars
  const noise = 0.05 * bare
  if (!Number.isNaN(pluginAdded)) {
    targets.push('| exemplars off = today\'s: µs / request the plugin adds with `exemplars: false` (under tracing) vs by default (no span), within ±5 % of bare\'s CPU | ' +
      `${offAdded.toFixed(2)} vs ${pluginAdded.toFixed(2)} µs (±${noise.toFixed(2)}) | ${status(Math.abs(offAdded - pluginAdded) <= noise)} |`)
  }
  targets.push(`| exemplars on, app tracing every request: cost over \`exemplars: false\` (reported, no target) | ${onOverOff.toFixed(3)}× | — |`)
}
if (sections.scrape) {
  const { scrape1000, promClient1000, growth, growth2000 } = sections.scrape
  targets.push(`| scrape of 1,000 route templates ≤ 50 ms median | ${scrape1000.toFixed(1)} ms | ${status(scrape1000 <= 50)} |`)
  targets.push(`| … and below prom-client | ${scrape1000.toFixed(1)} ms vs ${promClient1000.toFixed(1)} ms | ${status(scrape1000 < promClient1000)} |`)
  targets.push(`| scrape cost linear in series (per-sample cost at 1,000 vs 250 routes ≤ 1.25) | ${growth.toFixed(2)} (2,000 routes: ${growth2000.toFixed(2)}) | ${status(growth <= 1.25)} |`)
}
if (sections.formats) {
  const { text, openMetrics } = sections.formats.scrapeCpuMs
  targets.push(`| scrape of 1,000 route templates ≤ 50 ms in both formats, \`_created\` on (CPU of a whole answer: text 0.0.4 / OpenMetrics) | ${text.toFixed(1)} / ${openMetrics.toFixed(1)} ms | ${status(text <= 50 && openMetrics <= 50)} |`)
}
if (sections.rss) {
  const { worst, worstOld } = sections.rss
  targets.push(`| RSS flat (±10 %) over random unmatched URLs | worst ${(worst * 100).toFixed(1)} % (without V8's new space: ${(worstOld * 100).toFixed(1)} %) | ` +
    `${worst <= 0.10 ? 'met' : worstOld <= 0.10 ? '**not met** by RSS; met without the growth of V8\'s new space (young generation), see the table' : '**not met**'} |`)
}

const cpuModel = cpus()[0]?.model ?? 'unknown'
const md = [
  '# Benchmark results',
  '',
  `Generated by \`npm run bench${args.length > 0 ? ` -- ${args.join(' ')}` : ''}\` on ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC ` +
  `(took ${((Date.now() - started) / 60000).toFixed(1)} min): ` +
  `${cores} CPUs (${cpuModel}), Node ${process.version}, ${process.platform}/${process.arch}. ` +
  'The machine may be shared with other work: compare ratios within one run, not absolute figures across runs.',
  '',
  '## Targets',
  '',
  '| target | measured | status |',
  '|---|---|---|',
  ...targets,
  ...(sections.cpu ? ['', '## CPU per request', '', sections.cpu.markdown] : []),
  ...(sections.scrape ? ['', '## Scrape', '', sections.scrape.markdown] : []),
  ...(sections.formats ? ['', '## Scrape formats and gzip', '', sections.formats.markdown] : []),
  ...(sections.rss ? ['', '## Memory over random unmatched URLs', '', sections.rss.markdown] : []),
  ...(sections.pg ? ['', '## PostgreSQL: CPU per query through pg', '', sections.pg.markdown] : []),
  ...(sections.otlp ? ['', '## OTLP push', '', sections.otlp.markdown] : []),
  ''
].join('\n')
writeFileSync(`${here}RESULTS.md`, md)
writeReadmeResults(md)
console.log(md)

/** docs/performance.md carries the same results, between markers. */
function writeReadmeResults (results) {
  const readmePath = `${here}../docs/performance.md`
  const start = '<!-- bench-results:start (generated by npm run bench) -->'
  const end = '<!-- bench-results:end -->'
  const readme = readFileSync(readmePath, 'utf8')
  const from = readme.indexOf(start)
  const to = readme.indexOf(end)
  if (from === -1 || to === -1) return
  const body = results.split('\n').slice(1).join('\n').replace(/^## /gm, '#### ').trim()
  writeFileSync(readmePath, `${readme.slice(0, from + start.length)}\n${body}\n${readme.slice(to)}`)
}
