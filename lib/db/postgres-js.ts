import { tracingChannel } from 'node:diagnostics_channel'
import { readFileSync } from 'node:fs'
import { registerHooks, type ModuleHooks } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadedPackageDirs, writes, type PatchLogger } from '../patch'
import type { PgHub, QueryRecord } from './hub'

/**
 * postgres.js (the `postgres` package). Version 4 publishes every query and connection attempt
 * on diagnostics channels: they feed the same sinks as pg's instrumentation, so its queries
 * count in the same django_db_* series. Version 3 has no such channels and no hook that sees a
 * query's end: it is not measured, and the first time such a copy is seen beside the plugin
 * (loaded through `require` or `import`, or the app's dependency, as ESM imports run before any
 * registration), one warning says so and names the doc section.
 */

export const POSTGRES_JS_WARNING = 'upstream-metrics: postgres.js 3 (the "postgres" package) is used by this app, and its queries are not measured: the django_db_* series count queries sent through "pg" (node-postgres) and postgres.js 4. See node_modules/upstream-metrics/docs/postgresql.md, section "postgres.js".'

interface QueryContext {
  query?: string | null
  database?: string
  host?: string | null
  port?: number | null
  command?: string | null
  count?: number | null
  queued?: number
  error?: { code?: unknown, message?: unknown, name?: unknown }
}

interface ConnectContext {
  database?: string
  host?: string
  port?: number
  error?: unknown
}

interface WatchState {
  warned: boolean
  refs: number
  /** Loggers of the current holders; the latest reports a load. */
  readonly logs: PatchLogger[]
  hooks: ModuleHooks | undefined
  /** Hubs fed from the channels (one per process in practice), and the subscription while there are any. */
  readonly hubs: PgHub[]
  unsubscribe: (() => void) | undefined
}

const STATE = Symbol.for('upstream-metrics.postgres-js')

function state (): WatchState {
  const holder = globalThis as unknown as Record<symbol, WatchState | undefined>
  holder[STATE] ??= { warned: false, refs: 0, logs: [], hooks: undefined, hubs: [], unsubscribe: undefined }
  return holder[STATE]
}

function record (x: QueryContext): QueryRecord {
  const error = x.error
  return {
    attributes: { 'db.namespace': x.database, 'server.address': x.host ?? undefined, 'server.port': x.port ?? undefined },
    start: x.queued ?? performance.now(),
    text: x.query ?? undefined,
    result: { command: x.command, rowCount: x.count },
    failed: error !== undefined,
    code: typeof error?.code === 'string' ? error.code : undefined,
    message: typeof error?.message === 'string' ? error.message : undefined,
    fromServer: error?.name === 'PostgresError'
  }
}

function subscribe (s: WatchState): () => void {
  // asyncEnd comes once per settled query or attempt, failed ones included (with `error` set).
  const queries = tracingChannel('postgres:query').asyncEnd
  const connects = tracingChannel('postgres:connect').asyncEnd
  const query = (message: unknown): void => {
    for (const hub of s.hubs) {
      try {
        hub.finishQuery(record(message as QueryContext))
      } catch (err) {
        hub.fault(err)
      }
    }
  }
  const connect = (message: unknown): void => {
    const x = message as ConnectContext
    for (const hub of s.hubs) hub.connected({ database: x.database, host: x.host, port: x.port }, x.error === undefined)
  }
  queries.subscribe(query)
  connects.subscribe(connect)
  return () => {
    queries.unsubscribe(query)
    connects.unsubscribe(connect)
  }
}

/** Counts postgres.js 4's queries and connections in `hub`'s sinks; returns the release. */
export function followPostgresJs (hub: PgHub): () => void {
  const s = state()
  s.hubs.push(hub)
  s.unsubscribe ??= subscribe(s)
  let released = false
  return () => {
    if (released) return
    released = true
    s.hubs.splice(s.hubs.lastIndexOf(hub), 1)
    if (s.hubs.length === 0) {
      s.unsubscribe?.()
      s.unsubscribe = undefined
    }
  }
}

function majorOf (dir: string): number | undefined {
  try {
    const version = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version?: unknown }).version
    return typeof version === 'string' ? Number.parseInt(version, 10) : undefined
  } catch {
    return undefined
  }
}

/** The copies of version 3 (or unknown) need the warning; 4 and later are followed. */
function unmeasured (dir: string): boolean {
  const major = majorOf(dir)
  return major === undefined || major < 4
}

function warn (s: WatchState, log: PatchLogger | undefined, where: string): void {
  if (s.warned) return
  s.warned = true
  s.hooks?.deregister()
  s.hooks = undefined
  if (writes(log)) log.warn({ module: 'postgres', where }, POSTGRES_JS_WARNING)
  else process.emitWarning(POSTGRES_JS_WARNING, { code: 'UPSTREAM_METRICS_NOT_MEASURED', detail: where })
}

const PACKAGE = `${join('node_modules', 'postgres')}`

/** The copy of `postgres` the app's package.json lists, where it is installed. */
function listedByApp (): string | undefined {
  try {
    const manifest = JSON.parse(readFileSync(join(process.cwd(), 'package.json'), 'utf8')) as { dependencies?: Record<string, unknown> }
    if (manifest.dependencies?.postgres === undefined) return undefined
    const main = require.resolve('postgres', { paths: [process.cwd()] })
    return main.slice(0, main.lastIndexOf(PACKAGE) + PACKAGE.length)
  } catch {
    return undefined
  }
}

/**
 * Warns at once when an unmeasured postgres.js is already loaded or the app's dependency, else
 * on the first load of one (module hooks, removed with the last holder or after the warning).
 * Returns the release.
 */
export function watchPostgresJs (log?: PatchLogger): () => void {
  const s = state()
  if (s.warned) return () => {}
  const found = [...loadedPackageDirs('postgres'), listedByApp()].find((dir) => dir !== undefined && unmeasured(dir))
  if (found !== undefined) {
    warn(s, log, found)
    return () => {}
  }
  // Node before 22.15 has no in-thread module hooks: only the checks above.
  if (typeof registerHooks !== 'function') return () => {}
  if (log !== undefined) s.logs.push(log)
  s.refs++
  s.hooks ??= registerHooks({
    resolve (specifier, context, next) {
      const resolved = next(specifier, context)
      const at = resolved.url.lastIndexOf('/node_modules/postgres/')
      if (at !== -1 && resolved.url.startsWith('file:')) {
        const dir = fileURLToPath(resolved.url.slice(0, at + '/node_modules/postgres'.length))
        if (unmeasured(dir)) warn(s, s.logs.at(-1), resolved.url)
      }
      return resolved
    }
  })
  let released = false
  return () => {
    if (released) return
    released = true
    if (log !== undefined) s.logs.splice(s.logs.lastIndexOf(log), 1)
    if (--s.refs === 0) {
      s.hooks?.deregister()
      s.hooks = undefined
    }
  }
}
