/**
 * Starts the two apps the conformance test compares: the Django project (migrate, then gunicorn
 * with one worker, from Debian's /usr/bin/python3) and its Fastify twin (node-pg-migrate, then
 * node), each with a fresh PostgreSQL database and its own Redis database. Every wait is bounded
 * and every process is stopped at teardown (gunicorn also dies with its parent).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import IORedis from 'ioredis'
import pg from 'pg'
import { waitFor } from '../helpers/wait'

const run = promisify(execFile)

export const ROOT = resolve(__dirname, '..', '..')
export const DJANGO_DIR = join(__dirname, 'django')
const TWIN_DIR = join(__dirname, 'twin')
export const PYTHON = '/usr/bin/python3'

/** Python module → the Debian package that ships it, for the one-line message when one is missing. */
export const DEBIAN_PACKAGES: ReadonlyArray<[string, string]> = [
  ['django', 'python3-django'],
  ['django_prometheus', 'python3-django-prometheus'],
  ['psycopg2', 'python3-psycopg2'],
  ['django_redis', 'python3-django-redis'],
  ['gunicorn', 'gunicorn']
]

export interface PythonStack {
  missing: string[]
  versions: string
}

/** Which of the Debian packages are missing, and the versions of those present. */
export async function checkPythonStack (): Promise<PythonStack> {
  const script = `
import importlib, importlib.metadata as md
missing, versions = [], []
for module, package in ${JSON.stringify(DEBIAN_PACKAGES)}:
    try:
        importlib.import_module(module)
        versions.append(f"{package} {md.version(module.replace('_', '-'))}")
    except Exception:
        missing.append(package)
print(" ".join(missing))
print(", ".join(versions) + f", prometheus_client {md.version('prometheus_client')}" if not missing else "")
`
  try {
    const { stdout } = await run(PYTHON, ['-c', script], { timeout: 20_000, env: pythonEnv({}) })
    const [missing = '', versions = ''] = stdout.split('\n')
    return { missing: missing.split(' ').filter(Boolean), versions }
  } catch {
    return { missing: DEBIAN_PACKAGES.map(([, p]) => p), versions: '' }
  }
}

function pythonEnv (extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONDONTWRITEBYTECODE: '1', DJANGO_SETTINGS_MODULE: 'conformance_site.settings', ...extra }
  for (const name of ['PYTHONPATH', 'PYTHONHOME', 'PROMETHEUS_MULTIPROC_DIR', 'prometheus_multiproc_dir', 'PROMETHEUS_DISABLE_CREATED_SERIES']) delete env[name]
  return env
}

/** A child process whose output tail is kept for failure messages. */
export interface App {
  name: string
  base: string
  output: () => string
  stop: () => Promise<void>
}

function track (name: string, child: ChildProcess, base: string, group: boolean): App {
  let output = ''
  const keep = (chunk: Buffer): void => { output = (output + chunk.toString()).slice(-6000) }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  child.on('error', (err) => { output += `\n${name} failed to start: ${err.message}` })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const signal = (sig: NodeJS.Signals): void => {
    try {
      if (group && child.pid !== undefined) process.kill(-child.pid, sig)
      else child.kill(sig)
    } catch {}
  }
  return {
    name,
    base,
    output: () => output,
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return
      signal('SIGTERM')
      if (await Promise.race([exited.then(() => true), sleep(8000).then(() => false)])) return
      signal('SIGKILL')
      await Promise.race([exited, sleep(2000)])
    }
  }
}

/** Resolves when `pattern` appears in the app's output; bounded. */
async function waitForOutput (app: App, pattern: RegExp, deadlineMs: number, child: ChildProcess): Promise<void> {
  // 'exited': nothing more to wait for.
  const started = await waitFor(`${app.name} to start`, () => pattern.test(app.output()) || (child.exitCode !== null && 'exited'), { timeoutMs: deadlineMs })
    .catch(() => 'timed out')
  if (started !== true) throw new Error(`${app.name} did not start (waited for ${pattern}: ${started})\n${app.output()}`)
}

export interface Database { url: URL, name: string }

/** A fresh database next to DATABASE_URL's, named after it with a suffix. */
export async function freshDatabase (databaseUrl: string, suffix: string): Promise<Database> {
  const url = new URL(databaseUrl)
  const name = `${url.pathname.slice(1) || 'postgres'}_${suffix}`
  await maintenance(databaseUrl, async (client) => {
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
    await client.query(`CREATE DATABASE "${name}"`)
  })
  const own = new URL(url)
  own.pathname = `/${name}`
  return { url: own, name }
}

export async function dropDatabase (databaseUrl: string, name: string): Promise<void> {
  await maintenance(databaseUrl, async (client) => { await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) })
}

async function maintenance (databaseUrl: string, work: (client: pg.Client) => Promise<void>): Promise<void> {
  const url = new URL(databaseUrl)
  url.pathname = '/postgres'
  const client = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 10_000 })
  await client.connect()
  try {
    await work(client)
  } finally {
    await client.end()
  }
}

/** Deletes every key of the run (prefix) in a Redis database. */
export async function deleteKeys (redisUrl: string, prefix: string): Promise<void> {
  const redis = new IORedis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    const keys = await redis.keys(`${prefix}:*`)
    if (keys.length > 0) await redis.del(...keys)
  } finally {
    redis.disconnect()
  }
}

export function redisUrl (db: number): string {
  const url = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0')
  url.pathname = `/${db}`
  return url.toString()
}

/** Sets PR_SET_PDEATHSIG, so gunicorn's master gets SIGTERM if the test process dies, then becomes gunicorn. */
const GUNICORN_LAUNCHER = `
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
os.execv(sys.executable, [sys.executable, "-m", "gunicorn", *sys.argv[1:]])
`

export interface AppSettings {
  database: Database
  redisUrl: string
  /** A port nobody listens on: the apps' second cache, whose gets fail. */
  redisDownPort: number
  /** Prefix of every cache key of the run. */
  keyPrefix: string
  port: number
  /** Called as soon as the process exists, so that a failed start is stopped too. */
  started: (app: App) => void
}

/** `manage.py migrate`, then gunicorn with one sync worker; resolves once gunicorn listens. */
export async function startDjango (settings: AppSettings): Promise<App> {
  const { url, name } = settings.database
  const env = pythonEnv({
    CONFORMANCE_PG_DATABASE: name,
    CONFORMANCE_PG_HOST: url.hostname,
    CONFORMANCE_PG_PORT: url.port || '5432',
    CONFORMANCE_PG_USER: decodeURIComponent(url.username || 'postgres'),
    CONFORMANCE_PG_PASSWORD: decodeURIComponent(url.password),
    CONFORMANCE_REDIS_URL: settings.redisUrl,
    CONFORMANCE_REDIS_DOWN_URL: `redis://127.0.0.1:${settings.redisDownPort}/0`,
    CONFORMANCE_KEY_PREFIX: settings.keyPrefix
  })
  await run(PYTHON, ['manage.py', 'migrate', '--noinput', '-v', '0'], { cwd: DJANGO_DIR, env, timeout: 60_000 })
  const child = spawn(PYTHON, ['-c', GUNICORN_LAUNCHER,
    '--workers', '1', '--bind', `127.0.0.1:${settings.port}`, '--graceful-timeout', '5', '--timeout', '30',
    'conformance_site.wsgi:application'
  ], { cwd: DJANGO_DIR, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  const app = track('gunicorn', child, `http://127.0.0.1:${settings.port}`, true)
  settings.started(app)
  await waitForOutput(app, /Booting worker with pid/, 30_000, child)
  return app
}

/** node-pg-migrate up, then the twin; resolves once it listens. It exits when its stdin closes. */
export async function startTwin (settings: AppSettings): Promise<App> {
  const env = { ...process.env, DATABASE_URL: settings.database.url.toString() }
  await run(process.execPath, [join(ROOT, 'node_modules/node-pg-migrate/bin/node-pg-migrate.js'), 'up', '-m', join(TWIN_DIR, 'migrations'), '--verbose', 'false'], { cwd: ROOT, env, timeout: 60_000 })
  const child = spawn(process.execPath, [join(TWIN_DIR, 'server.mjs')], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: String(settings.port),
      TWIN_DATABASE_URL: settings.database.url.toString(),
      TWIN_REDIS_URL: settings.redisUrl,
      TWIN_REDIS_DOWN_PORT: String(settings.redisDownPort),
      TWIN_KEY_PREFIX: settings.keyPrefix
    },
    stdio: ['pipe', 'pipe', 'pipe']
  })
  const app = track('twin', child, `http://127.0.0.1:${settings.port}`, false)
  settings.started(app)
  await waitForOutput(app, /twin listening/, 30_000, child)
  return app
}
