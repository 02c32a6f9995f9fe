import t from 'tap'
import Fastify from 'fastify'
import upstreamMetrics from '../lib/index'

function sample (text: string, line: string): number | undefined {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `))
  return found === undefined ? undefined : Number(found.slice(line.length + 1))
}

t.test('per-route cells keep statuses, methods and routes apart', async (t) => {
  const app = Fastify()
  app.get('/early/:id', async () => 'declared before the plugin')
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.route({ method: ['GET', 'POST'], url: '/a/:id', handler: async (request, reply) => { reply.code(request.query && (request.query as { s?: string }).s === '1' ? 418 : 200); return 'x' } })
  app.get('/b', async () => { throw new RangeError('no') })
  const requests = [
    { url: '/a/1' }, { url: '/a/2' }, { url: '/a/3?s=1' }, { method: 'POST' as const, url: '/a/4' }, { method: 'POST' as const, url: '/a/5?s=1' },
    { url: '/b' }, { url: '/b' }, { url: '/early/1' }, { url: '/missing' }
  ]
  for (const r of requests) await app.inject(r)
  const text = (await app.inject({ url: '/metrics' })).body
  const by = (status: string, view: string, method: string) => sample(text, `django_http_responses_total_by_status_view_method_total{method="${method}",status="${status}",view="${view}"}`)
  t.equal(by('200', '/a/:id', 'GET'), 2)
  t.equal(by('418', '/a/:id', 'GET'), 1)
  t.equal(by('200', '/a/:id', 'POST'), 1)
  t.equal(by('418', '/a/:id', 'POST'), 1)
  t.equal(by('500', '/b', 'GET'), 2)
  t.equal(by('200', '/early/:id', 'GET'), 1, 'a route declared before the plugin is measured')
  t.equal(by('404', '<unnamed view>', 'GET'), 1)
  t.equal(sample(text, 'django_http_responses_total_by_status_total{status="200"}'), 4)
  t.equal(sample(text, 'django_http_requests_total_by_method_total{method="GET"}'), 8, 'seven, and the scrape itself')
  t.equal(sample(text, 'django_http_requests_total_by_method_total{method="POST"}'), 2)
  t.equal(sample(text, 'django_http_requests_total_by_view_transport_method_total{method="POST",transport="http",view="/a/:id"}'), 2)
  t.equal(sample(text, 'django_http_exceptions_total_by_view_total{view="/b"}'), 2)
  t.equal(sample(text, 'django_http_requests_latency_seconds_by_view_method_count{method="GET",view="/b"}'), 4, 'django observes a failed request twice')
  t.equal(sample(text, 'django_http_requests_latency_seconds_by_view_method_count{method="POST",view="/a/:id"}'), 2)
  await app.close()
})
