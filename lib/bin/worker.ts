#!/usr/bin/env node
import { createServer } from 'node:http'
import { parseArgs } from 'node:util'
import { Exposition, scrapeAnswer } from '../scrape'
import { Telemetry } from '../telemetry'
import { startRuntimeMetrics } from '../runtime'
import { Store } from '../store'
import { WorkerCollector, type WorkerLogger } from '../worker/collector'
import { loadIoredis, type IORedisClass } from '../worker/ioredis'
import { redactUrl, showUrl } from '../redact'
import { parseAddr, validateBroker, validatePrefix, validateQueue } from '../worker/options'

const DEFAULT_BROKER = process.env.BROKER_URL ?? 'redis://localhost:6379/0'
const DEFAULT_ADDR = process.env.DEFAULT_ADDR ?? '0.0.0.0:8888'
/** Each discovery is a SCAN of the keyspace and bounds the blocking read: more often than this is load on Redis for nothing. */
const MIN_DISCOVER_INTERVAL_S = 1

const USAGE = `usage: upstream-metrics-worker [--broker URL] [--addr HOST:PORT] [--queue NAME]... [--prefix PREFIX]

Prometheus exporter for BullMQ queues, with the Celery exporters' metrics
(celery-prometheus-exporter's and danihodovic/celery-exporter's).

options:
  --broker URL         Redis URL of the BullMQ queues. Defaults to ${redactUrl(DEFAULT_BROKER) ?? 'BROKER_URL'}
                       (environment BROKER_URL, else redis://localhost:6379/0)
  --addr HOST:PORT     Address the HTTPD should listen on. Defaults to ${DEFAULT_ADDR}
                       (environment DEFAULT_ADDR, else 0.0.0.0:8888; port 0 picks a free one)
  --queue NAME         A queue to follow; repeat for several. Default: every BullMQ queue
                       found under the prefix, looked up again every --discover-interval
  --prefix PREFIX      BullMQ key prefix. Defaults to bull
  --discover-interval SECONDS
                       How often to look for new queues without --queue. Defaults to 30;
                       at least ${MIN_DISCOVER_INTERVAL_S}
  --verbose            Also log each queue found
  --version            Print the version
  -h, --help           Show this help
`

function line (level: string, msg: string, obj: object): void {
  const extra = Object.entries(obj).filter(([, v]) => v !== undefined).map(([k, v]) => {
    const value = v instanceof Error ? v.message : typeof v === 'string' ? v : JSON.stringify(v)
    return ` ${k}=${value}`
  }).join('')
  process.stderr.write(`[${new Date().toISOString()}] upstream-metrics-worker:${level}: ${msg.replace(/^upstream-metrics-worker: /, '')}${extra}\n`)
}

const log: WorkerLogger = {
  info: (obj, msg) => line('INFO', msg, obj),
  warn: (obj, msg) => line('WARNING', msg, obj),
  error: (obj, msg) => line('ERROR', msg, obj)
}

/** Wrong arguments: status 2 and the usage, as argparse. */
function fail (message: string): never {
  process.stderr.write(`upstream-metrics-worker: error: ${message}\n${USAGE}`)
  process.exit(2)
}

/** Right arguments, and yet it cannot run: status 1 and the reason only. */
function die (message: string): never {
  process.stderr.write(`upstream-metrics-worker: error: ${message}\n`)
  process.exit(1)
}

/** parseArgs quotes a stray argument, which may well be a broker URL whose option was forgotten. */
function argumentProblem (err: Error & { code?: string }): string {
  if (err.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return 'unexpected argument without an option before it (write --broker URL, --queue NAME, …)'
  return err.message
}

function listenProblem (err: NodeJS.ErrnoException): string {
  if (err.code === 'EADDRINUSE') return 'the address is already in use (EADDRINUSE); is another exporter running? Choose another port with --addr'
  if (err.code === 'EADDRNOTAVAIL') return 'no interface has this address (EADDRNOTAVAIL)'
  if (err.code === 'EACCES') return 'permission denied (EACCES); ports below 1024 need privileges'
  return err.message
}

async function main (): Promise<void> {
  let args
  try {
    args = parseArgs({
      options: {
        broker: { type: 'string' },
        addr: { type: 'string' },
        queue: { type: 'string', multiple: true },
        prefix: { type: 'string' },
        'discover-interval': { type: 'string' },
        verbose: { type: 'boolean' },
        version: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' }
      },
      strict: true
    }).values
  } catch (err) {
    fail(argumentProblem(err as Error))
  }
  if (args.help === true) {
    process.stdout.write(USAGE)
    return
  }
  if (args.version === true) {
    process.stdout.write(`${(require('../../package.json') as { version: string }).version}\n`)
    return
  }

  const broker = args.broker ?? DEFAULT_BROKER
  const brokerProblem = validateBroker(broker)
  const problems = [
    brokerProblem === undefined ? undefined : `--broker ${brokerProblem}; got ${showUrl(broker)}`,
    validatePrefix(args.prefix ?? 'bull'),
    ...(args.queue ?? []).map(validateQueue)
  ].filter((p): p is string => p !== undefined)
  const addr = parseAddr(args.addr ?? DEFAULT_ADDR)
  if (typeof addr === 'string') problems.push(addr)
  const interval = Number(args['discover-interval'] ?? 30)
  if (!(interval >= MIN_DISCOVER_INTERVAL_S)) {
    problems.push(`--discover-interval must be at least ${MIN_DISCOVER_INTERVAL_S} second (each look-up scans Redis' keys); got ${Number.isNaN(interval) ? 'not a number' : interval}`)
  }
  if (problems.length > 0 || typeof addr === 'string') fail(problems.join('; '))

  let IORedis: IORedisClass
  try {
    IORedis = loadIoredis('upstream-metrics-worker')
  } catch (err) {
    die((err as Error).message.replace(/^upstream-metrics: /, ''))
  }

  const store = new Store('', 2000)
  const telemetry = new Telemetry(store, 2000, { createdSeries: true })
  const stopRuntime = startRuntimeMetrics(telemetry.runtimeMeter)
  const collector = new WorkerCollector(store, {
    IORedis,
    broker,
    queues: args.queue,
    prefix: args.prefix ?? 'bull',
    log,
    verbose: args.verbose === true,
    discoverIntervalMs: interval * 1000
  })

  // As prometheus_client's start_http_server: every GET path serves the metrics, OpenMetrics to a
  // scraper that prefers it, with the `_created` series the Celery exporters write.
  const negotiation = { openMetrics: true }
  const server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end()
      return
    }
    collector.refresh()
      .then(async () => {
        const scopes = await telemetry.collect()
        return await scrapeAnswer(new Exposition((format) => telemetry.serialize(scopes, format)), req.headers, negotiation)
      })
      .then(
        (answer) => res.writeHead(200, answer.headers).end(req.method === 'HEAD' ? undefined : answer.body),
        (err: Error) => {
          log.error({ err }, 'collecting metrics failed')
          res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('# metrics collection failed\n')
        }
      )
  })
  await new Promise<void>((resolve) => {
    server.once('error', (err: NodeJS.ErrnoException) => die(`cannot listen on ${args.addr ?? DEFAULT_ADDR}: ${listenProblem(err)}`))
    server.listen(addr.port, addr.host, () => resolve())
  })
  const bound = server.address()
  const shown = typeof bound === 'object' && bound !== null ? `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}` : String(bound)
  log.info({}, `Starting HTTPD on ${shown}`)
  collector.start()

  let stopping = false
  async function shutdown (signal: string): Promise<void> {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'Shutting down')
    server.closeAllConnections()
    await Promise.all([
      new Promise<void>((resolve) => server.close(() => resolve())),
      collector.close()
    ])
    stopRuntime()
    await telemetry.shutdown()
    process.exit(0)
  }
  process.on('SIGTERM', () => { shutdown('SIGTERM').catch(() => process.exit(1)) })
  process.on('SIGINT', () => { shutdown('SIGINT').catch(() => process.exit(1)) })
}

main().catch((err: unknown) => {
  process.stderr.write(`upstream-metrics-worker: ${(err as Error)?.stack ?? String(err)}\n`)
  process.exit(1)
})
