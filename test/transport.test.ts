import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import Fastify from 'fastify'
import upstreamMetrics from '../lib/index'
import { key, parse } from './helpers/metrics'
import { get } from './helpers/net'

function selfSigned (): { key: Buffer, cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'upstream-metrics-tls-'))
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function httpsGet (port: number, path: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, rejectUnauthorized: false, agent: false }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += String(d) })
      res.on('end', () => resolve(body))
    })
    req.on('error', reject)
    req.end()
  })
}

const byView = (view: string, transport: string) => key('django_http_requests_total_by_view_transport_method_total', { view, transport, method: 'GET' })

t.test('a real https server labels transport="https"', async (t) => {
  const app = Fastify({ https: selfSigned() })
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.get('/secure', async () => 'ok')
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  await httpsGet(port, '/secure')
  await httpsGet(port, '/secure')
  const m = parse(await httpsGet(port, '/metrics'))
  t.equal(m.samples.get(byView('/secure', 'https')), 2)
  t.equal(m.samples.get(key('django_http_requests_total_by_transport_total', { transport: 'https' })), 3)
  t.notOk(m.samples.has(key('django_http_requests_total_by_transport_total', { transport: 'http' })))
})

t.test('behind a trusted proxy, X-Forwarded-Proto decides the transport (django SECURE_PROXY_SSL_HEADER)', async (t) => {
  const app = Fastify({ trustProxy: '127.0.0.1' })
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.get('/proxied', async () => 'ok')
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  await get(`${base}/proxied`, { 'x-forwarded-proto': 'https' })
  await get(`${base}/proxied`)
  const m = parse((await get(`${base}/metrics`)).body)
  t.equal(m.samples.get(byView('/proxied', 'https')), 1)
  t.equal(m.samples.get(byView('/proxied', 'http')), 1)
})

t.test('an untrusted client cannot claim https', async (t) => {
  const app = Fastify()
  await app.register(upstreamMetrics, { runtimeMetrics: false })
  app.get('/direct', async () => 'ok')
  t.teardown(() => app.close())
  await app.inject({ url: '/direct', headers: { 'x-forwarded-proto': 'https' } })
  const m = parse((await app.inject('/metrics')).body)
  t.equal(m.samples.get(byView('/direct', 'http')), 1)
})
