import type { MeterProvider } from '@opentelemetry/api'
import type { FastifyInstance } from 'fastify'
import { MIGRATIONS } from '../names'
import { acquirePatch } from '../patch'
import type { Faults } from '../faults'
import type { ResolvedMigrations, ResolvedOptions } from '../options'
import type { Family, Store } from '../store'
import { readMigrations } from './migrations'
import { PgHub } from './hub'
import { PG_PATCH } from './pg'
import { DbRecorder } from './recorder'
import { followPostgresJs, watchPostgresJs } from './postgres-js'

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
  const sink = new DbRecorder(store, db, options.latencyBuckets, faults, options.exemplars)
  const applied = store.gauge(MIGRATIONS.applied)
  const unapplied = store.gauge(MIGRATIONS.unapplied)
  if (db.migrations !== undefined) reportMigrations(fastify, db.migrations, applied, unapplied)

  const lease = acquirePatch(PG_PATCH, fastify.log)
  const hub = PgHub.of(lease.instrumentation)
  hub.add(sink)
  if (db.semconvMetrics) hub.meters.add(meterProvider)
  const unfollow = followPostgresJs(hub)
  const unwatch = watchPostgresJs(fastify.log)
  return () => {
    hub.remove(sink)
    if (db.semconvMetrics) hub.meters.remove(meterProvider)
    lease.release()
    unfollow()
    unwatch()
  }
}

const MIGRATIONS_TIMEOUT_MS = 10_000

/** django_migrations_applied/unapplied_total, read once the app is ready (never failing it). */
function reportMigrations (fastify: FastifyInstance, migrations: ResolvedMigrations, applied: Family, unapplied: Family): void {
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
