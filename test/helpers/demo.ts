/** The demo started as `npm start` starts it, on a machine with Redis on localhost, for the end-to-end tests. */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import IORedis from 'ioredis'
import { freePort } from './net'
import { ROOT, startProcess, type Started } from './prometheus'
import { waitFor } from './wait'

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
/** The Redis the demo finds on localhost when REDIS_URL is unset. */
const LOCAL_REDIS_URL = 'redis://127.0.0.1:6379/0'
/** What `npm start` runs after building (the build is npm test's first step). */
const START_COMMAND = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start!

export interface Demo { url: string, port: number, output: Started['output'] }

/**
 * `npm start` with REDIS_URL unset, so the demo finds Redis on localhost and runs its BullMQ worker;
 * the run's queue lives under its own BullMQ prefix (`<tag>-<pid>`), removed at teardown after the
 * demo stopped. Resolves once it answers /healthz. `env` adds to (or overrides) its environment.
 */
export async function startDemo (t: Test, tag: string, env: NodeJS.ProcessEnv = {}): Promise<Demo> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const bullPrefix = `${tag}-${process.pid}`
  const demoEnv: NodeJS.ProcessEnv = { ...process.env, HOST: '127.0.0.1', PORT: String(port), DATABASE_URL, LOG_LEVEL: 'info', BULL_PREFIX: bullPrefix, ...env }
  delete demoEnv.REDIS_URL
  delete demoEnv.DEMO_WORKER
  const demo = startProcess(t, 'demo', 'sh', ['-c', START_COMMAND], demoEnv, { group: true })
  t.teardown(async () => {
    await demo.stop() // first, so that it adds no keys after the cleanup
    const redis = new IORedis(LOCAL_REDIS_URL)
    const keys = await redis.keys(`${bullPrefix}:*`)
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
  })
  await waitFor('the demo to answer /healthz', async () => (await fetch(`${url}/healthz`)).ok, { timeoutMs: 60_000, details: demo.output })
  return { url, port, output: demo.output }
}
