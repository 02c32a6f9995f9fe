import { readFileSync } from 'node:fs'
import { registerHooks, type ModuleHooks } from 'node:module'
import { join } from 'node:path'
import { loadedPackageDirs, writes, type PatchLogger } from '../patch'

/**
 * postgres.js (the `postgres` package) has no hook that sees a query's end, result and error the
 * way `pg`'s instrumentation does, so its queries are not measured. An app that uses it would get
 * no django_db_* series and no reason: the first time the package is seen beside the plugin (loaded
 * through `require` or `import`, or listed in the app's package.json, as ESM imports run before
 * any registration), one warning says so and names the doc section.
 */

export const POSTGRES_JS_WARNING = 'upstream-metrics: postgres.js (the "postgres" package) is used by this app, and its queries are not measured: the django_db_* series count queries sent through "pg" (node-postgres) only. See node_modules/upstream-metrics/docs/postgresql.md, section "postgres.js".'

interface WatchState {
  warned: boolean
  refs: number
  /** Loggers of the current holders; the latest reports a load. */
  readonly logs: PatchLogger[]
  hooks: ModuleHooks | undefined
}

const STATE = Symbol.for('upstream-metrics.postgres-js')

function state (): WatchState {
  const holder = globalThis as unknown as Record<symbol, WatchState | undefined>
  holder[STATE] ??= { warned: false, refs: 0, logs: [], hooks: undefined }
  return holder[STATE]
}

function warn (s: WatchState, log: PatchLogger | undefined, where: string): void {
  if (s.warned) return
  s.warned = true
  s.hooks?.deregister()
  s.hooks = undefined
  if (writes(log)) log.warn({ module: 'postgres', where }, POSTGRES_JS_WARNING)
  else process.emitWarning(POSTGRES_JS_WARNING, { code: 'UPSTREAM_METRICS_NOT_MEASURED', detail: where })
}

function listedByApp (): boolean {
  try {
    const manifest = JSON.parse(readFileSync(join(process.cwd(), 'package.json'), 'utf8')) as { dependencies?: Record<string, unknown> }
    return manifest.dependencies?.postgres !== undefined
  } catch {
    return false
  }
}

const PACKAGE_URL = '/node_modules/postgres/'

/**
 * Warns at once when postgres.js is already loaded or a dependency of the app, else on its first
 * load (module hooks, removed with the last holder or after the warning). Returns the release.
 */
export function watchPostgresJs (log?: PatchLogger): () => void {
  const s = state()
  if (s.warned) return () => {}
  const loaded = loadedPackageDirs('postgres')
  if (loaded.length > 0) {
    warn(s, log, loaded[0]!)
    return () => {}
  }
  if (listedByApp()) {
    warn(s, log, join(process.cwd(), 'package.json'))
    return () => {}
  }
  // Node before 22.15 has no in-thread module hooks: only the checks above.
  if (typeof registerHooks !== 'function') return () => {}
  if (log !== undefined) s.logs.push(log)
  s.refs++
  s.hooks ??= registerHooks({
    resolve (specifier, context, next) {
      const resolved = next(specifier, context)
      if (resolved.url.includes(PACKAGE_URL)) warn(s, s.logs.at(-1), resolved.url)
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
