import { readdirSync, readFileSync, statSync } from 'node:fs'
import { extname, join, resolve } from 'node:path'
import type { ResolvedMigrations } from '../options'
import type { MigrationTool } from '../types'

/**
 * django_migrations_{applied,unapplied}_total, read once at startup as Django's
 * `ExportMigrations()` does: applied = rows of the tool's migration table, unapplied =
 * migration files on disk not recorded there (only when that directory exists).
 */

interface ToolInfo {
  readonly table: string
  readonly names: (table: string) => string
  readonly dir: string
}

const TOOLS: Record<MigrationTool, ToolInfo> = {
  'node-pg-migrate': { table: 'pgmigrations', names: (t) => `SELECT name FROM ${t}`, dir: 'migrations' },
  knex: { table: 'knex_migrations', names: (t) => `SELECT name FROM ${t}`, dir: 'migrations' },
  prisma: { table: '_prisma_migrations', names: (t) => `SELECT migration_name AS name FROM ${t} WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`, dir: join('prisma', 'migrations') },
  drizzle: { table: 'drizzle.__drizzle_migrations', names: (t) => `SELECT hash AS name, created_at FROM ${t}`, dir: 'drizzle' }
}

const DETECT_ORDER: readonly MigrationTool[] = ['node-pg-migrate', 'knex', 'prisma', 'drizzle']

export interface MigrationResult {
  readonly tool: MigrationTool | undefined
  readonly applied: number
  readonly unapplied: number | undefined
}

function quoted (table: string): string {
  return table.split('.').map((part) => `"${part.replace(/"/g, '""')}"`).join('.')
}

function literal (value: string): string {
  return `'${value.replace(/'/g, "''")}'`
}

function isDir (path: string): boolean {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

function unappliedFromDir (tool: MigrationTool, dir: string, rows: Array<{ name?: unknown, created_at?: unknown }>): number | undefined {
  if (!isDir(dir)) return undefined
  const applied = new Set(rows.map((r) => String(r.name)))
  if (tool === 'drizzle') {
    const journal = JSON.parse(readFileSync(join(dir, 'meta', '_journal.json'), 'utf8')) as { entries?: Array<{ when?: number }> }
    const last = rows.reduce((max, r) => Math.max(max, Number(r.created_at) || 0), 0)
    return (journal.entries ?? []).filter((e) => typeof e.when === 'number' && e.when > last).length
  }
  const entries = readdirSync(dir, { withFileTypes: true }).filter((e) => !e.name.startsWith('.'))
  let names: string[]
  if (tool === 'prisma') names = entries.filter((e) => e.isDirectory()).map((e) => e.name)
  else if (tool === 'knex') names = entries.filter((e) => e.isFile()).map((e) => e.name)
  else names = entries.filter((e) => e.isFile()).map((e) => e.name.slice(0, e.name.length - extname(e.name).length))
  return names.filter((n) => !applied.has(n)).length
}

export async function readMigrations (m: ResolvedMigrations): Promise<MigrationResult | undefined> {
  if (m.count !== undefined) {
    const counts = await m.count()
    return { tool: undefined, applied: counts.applied, unapplied: counts.unapplied }
  }
  const client = m.client!
  let tool = m.tool
  if (tool === undefined) {
    const probe = DETECT_ORDER.map((t, i) => `to_regclass(${literal(quoted(m.table ?? TOOLS[t].table))}) IS NOT NULL AS t${i}`).join(', ')
    const row = (await client.query(`SELECT ${probe}`)).rows[0] as Record<string, unknown> | undefined
    const at = DETECT_ORDER.findIndex((_, i) => row?.[`t${i}`] === true)
    if (at === -1) return undefined
    tool = DETECT_ORDER[at]!
  }
  const info = TOOLS[tool]
  const { rows } = await client.query(info.names(quoted(m.table ?? info.table)))
  const typed = rows as Array<{ name?: unknown, created_at?: unknown }>
  return { tool, applied: typed.length, unapplied: unappliedFromDir(tool, resolve(m.dir ?? info.dir), typed) }
}
