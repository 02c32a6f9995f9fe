import { DB, MODEL } from '../names'
import type { Faults } from '../faults'
import type { ResolvedDb } from '../options'
import { exemplarOf, observe, type Family, type HistogramCell, type Store } from '../store'
import { ConnectionAliases } from './aliases'
import { declaredModels, modelNames } from './models'
import type { ConnectionInfo, DbSink, FinishedQuery } from './hub'
import { modelLabel } from './sql'

const VENDOR = 'postgresql'

/** Turns finished queries and connections into this instance's django_db_* and django_model_* cells. */
export class DbRecorder implements DbSink {
  private readonly execute: Family
  private readonly errors: Family
  private readonly duration: Family<HistogramCell>
  private readonly newConnections: Family
  private readonly newConnectionErrors: Family
  private readonly models: Record<'INSERT' | 'UPDATE' | 'DELETE', Family>
  private readonly aliases: ConnectionAliases
  private readonly modelName: (table: string) => string
  private readonly publicSchema: boolean

  /** `exemplars`: each duration observation keeps the query's sampled span as its bucket's exemplar. */
  constructor (store: Store, private readonly db: ResolvedDb, private readonly bounds: readonly number[], private readonly faults: Faults, readonly exemplars = false) {
    this.execute = store.counter(DB.execute)
    store.counter(DB.executeMany) // registered as in django-prometheus; pg has no executemany()
    this.errors = store.counter(DB.errors)
    this.duration = store.histogram(DB.queryDuration, bounds)
    this.newConnections = store.counter(DB.newConnections)
    this.newConnectionErrors = store.counter(DB.newConnectionErrors)
    this.models = {
      INSERT: store.counter(MODEL.inserts),
      UPDATE: store.counter(MODEL.updates),
      DELETE: store.counter(MODEL.deletes)
    }
    this.aliases = new ConnectionAliases(db.alias, faults)
    this.modelName = modelNames(db.models, faults)
    this.publicSchema = db.defaultSchema === 'public'
    // As ExportModelOperationsMixin('claim') does at import: the mapped models' series start at 0.
    for (const name of declaredModels(db.models)) {
      for (const family of Object.values(this.models)) family.cell(name)
    }
  }

  query (q: FinishedQuery): void {
    try {
      const a = q.attributes
      const c = a === undefined ? this.aliases.cells(undefined, undefined, undefined) : this.aliases.cells(a['db.namespace'], a['server.address'], a['server.port'])
      // django adds 1 per execute() call, however many statements its text holds.
      c.execute ??= this.execute.cell(c.alias, VENDOR)
      c.execute.value++
      observe(c.duration ??= this.duration.cell(c.alias, VENDOR), this.bounds, q.seconds, this.exemplars && q.span !== undefined ? exemplarOf(q.span, q.seconds) : undefined)
      if (q.error !== undefined) {
        let e = c.errors.get(q.error)
        if (e === undefined) {
          e = this.errors.cell(c.alias, VENDOR, q.error)
          c.errors.set(q.error, e)
        }
        e.value++
      }
      if (q.changes !== undefined) this.countChanges(q.changes)
    } catch (err) {
      this.faults.report(err)
    }
  }

  fault (err: unknown): void {
    this.faults.report(err)
  }

  connect (connection: ConnectionInfo, ok: boolean): void {
    try {
      const c = this.aliases.cells(connection.database, connection.host, connection.port)
      // django counts the attempt before connecting, so a failed one is in both series.
      c.newConnections ??= this.newConnections.cell(c.alias, VENDOR)
      c.newConnections.value++
      if (!ok) (c.newConnectionErrors ??= this.newConnectionErrors.cell(c.alias, VENDOR)).value++
    } catch (err) {
      this.faults.report(err)
    }
  }

  private countChanges (changes: NonNullable<FinishedQuery['changes']>): void {
    for (const change of changes) {
      if (change.rows > 0) {
        const table = this.publicSchema ? change.statement.table : modelLabel(change.statement, this.db.defaultSchema)
        this.models[change.statement.op].cell(this.modelName(table)).value += change.rows
      }
    }
  }
}
