import { inspect } from 'node:util'
import t from 'tap'
import Fastify from 'fastify'
import upstreamMetrics from '../lib/index'
import { redactUrl, show, showUrl } from '../lib/redact'
import { freePort } from './helpers/net'
import { waitFor } from './helpers/wait'

const TOKEN = 'ghp_tok3nInTheUserPart'

t.test('every part of a URL\'s credentials is hidden: a token as the user part, a user name, a password', async (t) => {
  const cases: Array<[string, string]> = [
    [`https://${TOKEN}@collector.example/v1/metrics`, 'https://***@collector.example/v1/metrics'],
    [`https://${TOKEN}:@collector.example/v1/metrics`, 'https://***@collector.example/v1/metrics'],
    [`https://${TOKEN}:x-oauth-basic@collector.example`, 'https://***:***@collector.example'],
    [`redis://default:${TOKEN}@127.0.0.1:6379/0`, 'redis://***:***@127.0.0.1:6379/0'],
    [`redis://:${TOKEN}@127.0.0.1:6379/0`, 'redis://:***@127.0.0.1:6379/0'],
    [`redis://127.0.0.1/0?password=${TOKEN}#${TOKEN}`, 'redis://127.0.0.1/0?…#…'],
    ['http://127.0.0.1:4318/v1/metrics', 'http://127.0.0.1:4318/v1/metrics']
  ]
  for (const [url, shown] of cases) {
    t.equal(redactUrl(url), shown, url.replace(TOKEN, 'TOKEN'))
    t.equal(showUrl(url), shown)
    t.equal(show(url), JSON.stringify(shown))
  }
})

function capturingLogger (): { text: () => string, lines: () => Array<{ level: number, msg: string, endpoint?: string }>, stream: { write: (line: string) => void } } {
  const raw: string[] = []
  return {
    text: () => raw.join(''),
    lines: () => raw.map((l) => JSON.parse(l) as { level: number, msg: string, endpoint?: string }),
    stream: { write: (line: string) => { raw.push(line) } }
  }
}

t.test('an OTLP endpoint with a token as its user part: neither the start line nor a failure warning prints it', async (t) => {
  const port = await freePort()
  const log = capturingLogger()
  const app = Fastify({ logger: { level: 'info', stream: log.stream } })
  await app.register(upstreamMetrics, { runtimeMetrics: false, otlp: { endpoint: `http://${TOKEN}@127.0.0.1:${port}/v1/metrics`, intervalMs: 100, timeoutMs: 50 } })
  t.teardown(() => app.close())
  await app.ready()
  // Nothing listens on the port: the exports fail and one warning is logged.
  const warning = await waitFor('a failed-export warning', () => log.lines().find((l) => l.msg.includes('OTLP export failed')))
  const start = log.lines().find((l) => l.msg.includes('pushing metrics over OTLP'))
  t.equal(start?.endpoint, `http://***@127.0.0.1:${port}/v1/metrics`, 'the start line shows where, without the token')
  t.equal(warning.endpoint, start?.endpoint, 'so does the warning')
  t.notMatch(log.text(), TOKEN, 'the token is nowhere in the log')
})

t.test('option errors show a URL option without its user part', async (t) => {
  const cases: Array<[Record<string, unknown>, string, string]> = [
    [{ otlp: { endpoint: `ftp://${TOKEN}@collector/v1/metrics` } }, 'otlp.endpoint', 'ftp://***@collector/v1/metrics'],
    [{ worker: { broker: `http://${TOKEN}@127.0.0.1/0` } }, 'worker.broker', 'http://***@127.0.0.1/0'],
    [{ worker: `redis://${TOKEN}@127.0.0.1/0` }, 'worker', 'redis://***@127.0.0.1/0'],
    [{ path: `http://${TOKEN}@127.0.0.1/metrics` }, 'path', '"http://***@127.0.0.1/metrics"']
  ]
  for (const [options, name, shown] of cases) {
    const app = Fastify()
    const err = await app.register(upstreamMetrics, options as never).then(() => undefined, (e: Error & { code?: string }) => e)
    await app.close().catch(() => {})
    t.equal(err?.code, 'UPSTREAM_METRICS_INVALID_OPTION', name)
    t.match(err?.message, `option "${name}"`)
    t.match(err?.message, shown, `${name}: the URL is shown as ${shown}`)
    t.notMatch(inspect(err), TOKEN, `${name}: the token is not in the error`)
  }
})
