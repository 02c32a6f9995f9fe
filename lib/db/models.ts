import type { Faults } from '../faults'
import type { DbModels } from '../types'

/** The most tables whose `db.models` answer is remembered (past it the function is asked again). */
const MAX_REMEMBERED = 1000

/**
 * The `model` label of a table (its default label: bare in `db.defaultSchema`, else
 * `schema.table`): its name in `db.models`, else the table itself. A function is asked once
 * per table; one that throws or answers anything but a non-empty string keeps the table name.
 */
export function modelNames (models: DbModels | undefined, faults: Faults): (table: string) => string {
  if (models === undefined) return (table) => table
  if (typeof models !== 'function') {
    const byTable = new Map(Object.entries(models))
    return (table) => byTable.get(table) ?? table
  }
  const known = new Map<string, string>()
  return (table) => {
    let name = known.get(table)
    if (name !== undefined) return name
    name = table
    try {
      const chosen: unknown = models(table)
      if (typeof chosen === 'string' && chosen !== '') name = chosen
      else if (chosen !== undefined) faults.report(new TypeError(`upstream-metrics: db.models returned ${typeof chosen} for a table; expected a non-empty string or undefined`))
    } catch (err) {
      faults.report(err)
    }
    if (known.size < MAX_REMEMBERED) known.set(table, name)
    return name
  }
}

/** The model names a record maps to, whose series start at 0 as `ExportModelOperationsMixin` creates them. */
export function declaredModels (models: DbModels | undefined): string[] {
  return models === undefined || typeof models === 'function' ? [] : [...new Set(Object.values(models))]
}
