// Cost of following BullMQ queues: CPU seconds the exporter process spends per job (each job
// is 4 stream events: added, waiting, active, completed) and how far it lags behind the workers.
// Usage: npm run build && node bench/worker.mjs [jobs]   (Redis 127.0.0.1:6379, database 6)
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { Queue, Worker } from 'bullmq'
import IORedis from 'ioredis'

const JOBS = Number(process.argv[2] ?? 5000)
const prefix = `umw-bench-${process.pid}`
const connection = { host: '127.0.0.1', port: 6379, db: 6 }
const ticks = 100 // USER_HZ

function cpuSeconds (pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / ticks
}

const child = spawn(process.execPath, ['dist/bin/worker.js', '--broker', 'redis://127.0.0.1:6379/6', '--addr', '127.0.0.1:0', '--queue', 'bench', '--prefix', prefix], { stdio: ['ignore', 'ignore', 'pipe'] })
let err = ''
child.stderr.on('data', (c) => { err += c })
for (let i = 0; i < 200 && !err.includes('Connected to broker'); i++) await sleep(50)
const url = `http://127.0.0.1:${/Starting HTTPD on 127\.0\.0\.1:(\d+)/.exec(err)[1]}/metrics`
const success = async () => Number(/^celery_tasks\{state="SUCCESS"\} (\S+)/m.exec(await (await fetch(url)).text())[1])

const queue = new Queue('bench', { connection, prefix })
const worker = new Worker('bench', async () => 'ok', { connection, prefix, concurrency: 50, removeOnComplete: { count: 0 } })
let done = 0
const allDone = new Promise((resolve) => worker.on('completed', () => { if (++done === JOBS) resolve() }))
const cpuBefore = cpuSeconds(child.pid)
const start = Date.now()
for (let i = 0; i < JOBS; i += 500) await queue.addBulk(Array.from({ length: Math.min(500, JOBS - i) }, () => ({ name: 'job', data: {} })))
await Promise.race([allDone, sleep(120_000, undefined, { ref: false })])
const workersDone = Date.now()
let seen = 0
for (let i = 0; i < 1200 && seen < JOBS; i++) { seen = await success(); if (seen < JOBS) await sleep(25) }
const exporterDone = Date.now()
const cpu = cpuSeconds(child.pid) - cpuBefore
console.log(JSON.stringify({
  jobs: JOBS,
  counted: seen,
  workersSeconds: (workersDone - start) / 1000,
  exporterLagMs: exporterDone - workersDone,
  exporterCpuSeconds: cpu,
  exporterCpuMicrosecondsPerJob: Math.round(cpu / JOBS * 1e6),
  exporterRssMB: Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]) / 1024)
}))
await worker.close()
await queue.obliterate({ force: true })
await queue.close()
child.kill('SIGTERM')
const redis = new IORedis(connection)
const keys = await redis.keys(`${prefix}:*`)
if (keys.length > 0) await redis.del(...keys)
redis.disconnect()
