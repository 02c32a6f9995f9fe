import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import Fastify from 'fastify'
import upstreamMetrics from '../lib/index'
import { CLOSE_TIMEOUT_MS } from '../lib/otlp/index'
import { key } from './helpers/metrics'
import { freePort } from './helpers/net'
import { Receiver, translate } from './helpers/otlp'
import { packed, packedApp, run } from './helpers/packed-app'
import { waitFor } from './helpers/wait'

// npm installs: more room than the suite's 120 s when the machine is loaded (well under a minute idle).
t.setTimeout(300_000)

const root = join(__dirname, '..')

function capturingLogger (): { lines: () => Array<{ level: number, msg: string }>, stream: { write: (line: string) => void } } {
  const raw: string[] = []
  return { lines: () => raw.map((l) => JSON.parse(l) as { level: number, msg: string }), stream: { write: (line: string) => { raw.push(line) } } }
}

for (const collector of ['never answers', 'refuses connections'] as const) {
  t.test(`close() with a Collector that ${collector}: over within CLOSE_TIMEOUT_MS, not the export timeout, and says the last interval is lost`, async (t) => {
    const receiver = new Receiver()
    if (collector === 'never answers') {
      receiver.behaviour = { kind: 'slow', ms: 600_000 }
      await receiver.start()
    } else {
      receiver.port = await freePort()
    }
    t.teardown(() => receiver.stop())
    const log = capturingLogger()
    const app = Fastify({ logger: { level: 'info', stream: log.stream } })
    // The default export timeout (10 s): the bound at close is shorter.
    await app.register(upstreamMetrics, { runtimeMetrics: false, otlp: { endpoint: receiver.url, intervalMs: 600_000 } })
    app.get('/work', async () => 'done')
    await app.ready()
    for (let i = 0; i < 3; i++) await app.inject('/work')

    const started = Date.now()
    // The export timeout is 10 s: closing before it proves the shorter bound (without it, close takes 10 to 11 s).
    const closed = await Promise.race([
      app.close().then(() => 'closed'),
      new Promise((resolve) => setTimeout(resolve, 9_000, 'still waiting when the export timeout is near')).then((v) => v)
    ])
    t.equal(closed, 'closed')
    t.comment(`closed in ${Date.now() - started} ms (CLOSE_TIMEOUT_MS = ${CLOSE_TIMEOUT_MS})`)
    if (collector === 'never answers') t.equal(receiver.arrived, 1, 'the last export was attempted')

    const warnings = log.lines().filter((l) => l.level === 40)
    t.equal(warnings.length, 1, 'one warning')
    t.match(warnings[0]?.msg, /the last OTLP export, sent as the app closed, failed/)
    t.match(warnings[0]?.msg, /counts since the last successful export are not delivered/)
    t.notMatch(warnings[0]?.msg, /next successful export/, 'no next export is promised: none follows')
  })
}

t.test('a container-style stop (SIGTERM to the process) of the README quick start pushes the last interval: every answered request', async (t) => {
  const receiver = await new Receiver().start()
  t.teardown(() => receiver.stop())
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const quickStart = /```js\n(\/\/ server\.mjs\n[\s\S]*?)```/.exec(readme)?.[1]
  t.ok(quickStart?.includes('close-with-grace'), 'the README quick start handles SIGTERM with close-with-grace')
  const base = packed('shutdown')
  t.teardown(base.remove)
  const exporter = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).peerDependencies['@opentelemetry/exporter-metrics-otlp-proto'] as string
  const dir = packedApp(base, 'app', [`close-with-grace@${require('close-with-grace/package.json').version as string}`, `@opentelemetry/exporter-metrics-otlp-proto@${exporter}`], { 'server.mjs': quickStart! })

  const port = await freePort()
  // Push on through the standard variables; an interval far longer than the test, so only the push at close can carry the counts.
  const server = run('node', ['server.mjs'], dir, {
    PORT: String(port),
    OTEL_METRICS_EXPORTER: 'otlp',
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: receiver.url,
    OTEL_METRIC_EXPORT_INTERVAL: '3600000'
  })
  t.teardown(async () => {
    server.signal('SIGKILL')
    await server.exit
  })
  // The sample logs nothing: the first request is retried until the app listens.
  let answered = await waitFor('the app to answer', async () => await fetch(`http://127.0.0.1:${port}/patients/0`).then((res) => res.status === 200 ? 1 : undefined, () => undefined), { timeoutMs: 30_000, details: server.output })
  for (let i = 1; i < 37; i++) {
    if ((await fetch(`http://127.0.0.1:${port}/patients/${i}`)).status === 200) answered++
  }
  t.equal(answered, 37)
  t.equal(receiver.received.length, 0, 'nothing pushed before the stop')

  server.child.kill('SIGTERM')
  t.same(await server.exit, { code: 0, signal: null }, 'it exits cleanly on SIGTERM')
  t.equal(receiver.received.length, 1, 'one push, at close')
  const pushed = translate(receiver.received[0]!.body)
  t.equal(pushed.samples.get(key('django_http_responses_total_by_status_view_method_total', { method: 'GET', status: '200', view: '/patients/:id' })), answered, 'exactly the answered requests')
})
