import type { MeterProvider } from '@opentelemetry/api'
import type { FastifyInstance } from 'fastify'
import { DB, MIGRATIONS, MODEL } from '../names'
import { acquirePatch } from '../patch'
import type { Faults } from '../faults'
import type { ResolvedOptions } from '../options'
import { observe, type Cell, type Family, type HistogramCell, type Store } from '../store'
import type { DbConnectionInfo } from '../types'
import { readMigrations } from './migrations'
import { declaredModels, modelNames } from './models'
import { modelLabel } from './sql'
import { PG_PATCH, PgHub, type DbSink, type FinishedQuery } from './pg'

export const VENDOR = 'postgresql'

/**
 * One alias's series, each created on its first count: a series appears only then, as a
 * prometheus_client child does (a refused connection creates no execute or duration series).
 */
interface AliasCells {
  readonly alias: string
  execute: Cell | undefined
  duration: HistogramCell | undefined
  newConnections: Cell | undefined
  newConnectionErrors: Cell | undefined
  readonly errors: Map<string, Cell>
}

/**
 * Wires this Fastify instance to the shared pg instrumentation: a sink that turns
 * finished queries and connections into django_db_* / django_model_* cells of this
 * instance's store. Returns the cleanup, run on close: the sink is removed at once
 * and the patches go when no instance (nor the preload) holds them any more.
 */
export function instrumentDb (
  fastify: FastifyInstance,
  store: Store,
  options: ResolvedOptions,
  faults: Faults,
  meterProvider: MeterProvider
): () => void {
  const db = options.db
  if (!db.enabled) return () => {}
  const execute = store.counter(DB.execute)
  store.counter(DB.executeMany) // registered as in django-prometheus; pg has no executemany()
  const errors = store.counter(DB.errors)
  const duration = store.histogram(DB.queryDuration, options.latencyBuckets)
  const newConnections = store.counter(DB.newConnections)
  const newConnectionErrors = store.counter(DB.newConnectionErrors)
  const models: Record<'INSERT' | 'UPDATE' | 'DELETE', Family> = {
    INSERT: store.counter(MODEL.inserts),
    UPDATE: store.counter(MODEL.updates),
    DELETE: store.counter(MODEL.deletes)
  }
  const applied = store.gauge(MIGRATIONS.applied)
  const unapplied = store.gauge(MIGRATIONS.unapplied)
  const bounds = options.latencyBuckets
  const publicSchema = db.defaultSchema === 'public'
  const modelName = modelNames(db.models, faults)
  // As ExportModelOperationsMixin('claim') does at import: the mapped models' series start at 0.
  for (const name of declaredModels(db.models)) {
    for (const family of Object.values(models)) family.cell(name)
  }

  const migrations = db.migrations
  if (migrations !== undefined) {
    fastify.addHook('onReady', async () => {
      try {
        const result = await withTimeout(readMigrations(migrations), MIGRATIONS_TIMEOUT_MS)
        if (result === undefined) {
          fastify.log.warn('upstream-metrics: db.migrations is on but no migration table (pgmigrations, knex_migrations, _prisma_migrations, drizzle.__drizzle_migrations) was found; set db.migrations.tool/table or count')
          return
        }
        applied.cell(migrations.connection).value = result.applied
        if (result.unapplied !== undefined) unapplied.cell(migrations.connection).value = result.unapplied
      } catch (err) {
        fastify.log.warn({ err }, 'upstream-metrics: reading the migrations failed; django_migrations_* are not exposed')
      }
    })
  }

  function cellsFor (alias: string): AliasCells {
    return { alias, execute: undefined, duration: undefined, newConnections: undefined, newConnectionErrors: undefined, errors: new Map() }
  }

  // Series appear on first use, as prometheus_client creates a child on its first update.
  let fixed: AliasCells | undefined
  const byConnection = new Map<string, AliasCells>()
  const aliasOption = db.alias
  function cells (database: unknown, host: unknown, port: unknown): AliasCells {
    if (typeof aliasOption === 'string') {
      fixed ??= cellsFor(aliasOption)
      return fixed
    }
    const key = `${String(host)}\u0000${String(port)}\u0000${String(database)}`
    let found = byConnection.get(key)
    if (found === undefined) {
      let alias = 'default'
      try {
        const c: DbConnectionInfo = {
          database: typeof database === 'string' ? database : undefined,
          host: typeof host === 'string' ? host : undefined,
          port: typeof port === 'number' ? port : undefined
        }
        const chosen = aliasOption(c)
        if (typeof chosen === 'string' && chosen !== '') alias = chosen
      } catch (err) {
        faults.report(err)
      }
      found = cellsFor(alias)
      if (byConnection.size < 1000) byConnection.set(key, found)
    }
    return found
  }

  const exemplars = options.exemplars
  const sink: DbSink = {
    exemplars,
    query (q: FinishedQuery) {
      try {
        const a = q.attributes
        const c = a === undefined ? cells(undefined, undefined, undefined) : cells(a['db.namespace'], a['server.address'], a['server.port'])
        // django adds 1 per execute() call, however many statements its text holds.
        c.execute ??= execute.cell(c.alias, VENDOR)
        c.execute.value++
        observe(c.duration ??= duration.cell(c.alias, VENDOR), bounds, q.seconds, exemplars ? q.span : undefined)
        if (q.error !== undefined) {
          let e = c.errors.get(q.error)
          if (e === undefined) {
            e = errors.cell(c.alias, VENDOR, q.error)
            c.errors.set(q.error, e)
          }
          e.value++
        }
        if (q.changes !== undefined) {
          for (const change of q.changes) {
            if (change.rows > 0) {
              const table = publicSchema ? change.statement.table : modelLabel(change.statement, db.defaultSchema)
              models[change.statement.op].cell(modelName(table)).value += change.rows
            }
          }
        }
      } catch (err) {
        faults.report(err)
      }
    },
    fault (err) {
      faults.report(err)
    },
    connect (connection, ok) {
      try {
        const c = cells(connection.database, connection.host, connection.port)
        // django counts the attempt before connecting, so a failed one is in both series.
        c.newConnections ??= newConnections.cell(c.alias, VENDOR)
        c.newConnections.value++
        if (!ok) (c.newConnectionErrors ??= newConnectionErrors.cell(c.alias, VENDOR)).value++
      } catch (err) {
        faults.report(err)
      }
    }
  }

  const lease = acquirePatch(PG_PATCH, fastify.log)
  const hub = PgHub.of(lease.instrumentation)
  hub.add(sink)
  if (db.semconvMetrics) hub.meters.add(meterProvider)
  return () => {
    hub.remove(sink)
    if (db.semconvMetrics) hub.meters.remove(meterProvider)
    lease.release()
  }
}

const MIGRATIONS_TIMEOUT_MS = 10_000

async function withTimeout<T> (promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms)
    timer.unref()
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}
