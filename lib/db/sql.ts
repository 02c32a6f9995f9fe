/**
 * Finds the operation and target table of data-changing SQL statements, for the
 * django_model_* counters. It reads only the statement's head (after any `WITH`
 * list) and answers `undefined` whenever it is not sure: a wrong model label is
 * worse than a missing count. The text is never kept beyond the parse cache.
 */

export type Operation = 'INSERT' | 'UPDATE' | 'DELETE'

export interface ModelStatement {
  readonly op: Operation
  /** Table name, schema-qualified only outside the default schema. */
  readonly table: string
  /** The schema written in the statement, if any. */
  readonly schema: string | undefined
  /** The bare table name. */
  readonly name: string
}

/** The `model` label for a parsed statement when the default schema is not the parser's. */
export function modelLabel (statement: ModelStatement, defaultSchema: string): string {
  return statement.schema === undefined || statement.schema === defaultSchema ? statement.name : `${statement.schema}.${statement.name}`
}

const WORD_START = /[A-Za-z_\u0080-\uffff]/
const WORD_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/
const DOLLAR_TAG = /\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/y

class Scanner {
  i = 0
  constructor (readonly s: string) {}

  get done (): boolean {
    return this.i >= this.s.length
  }

  peek (): string {
    return this.s[this.i] ?? ''
  }

  /** Skips white space and comments (`--` to end of line, nested block comments). */
  space (): void {
    const s = this.s
    for (;;) {
      const c = s[this.i]
      if (c === ' ' || c === '\n' || c === '\t' || c === '\r' || c === '\f') this.i++
      else if (c === '-' && s[this.i + 1] === '-') {
        const end = s.indexOf('\n', this.i)
        this.i = end === -1 ? s.length : end + 1
      } else if (c === '/' && s[this.i + 1] === '*') {
        let depth = 1
        this.i += 2
        while (this.i < s.length && depth > 0) {
          if (s[this.i] === '/' && s[this.i + 1] === '*') { depth++; this.i += 2 } else if (s[this.i] === '*' && s[this.i + 1] === '/') { depth--; this.i += 2 } else this.i++
        }
      } else return
    }
  }

  /** An unquoted word, lower-cased as PostgreSQL folds it; '' if none here. */
  word (): string {
    this.space()
    const start = this.i
    if (!WORD_START.test(this.peek())) return ''
    this.i++
    while (this.i < this.s.length && WORD_CHAR.test(this.s[this.i]!)) this.i++
    return this.s.slice(start, this.i).toLowerCase()
  }

  /** An identifier: quoted (verbatim, `""` unescaped) or unquoted (lower-cased); undefined if none. */
  identifier (): string | undefined {
    this.space()
    const c = this.peek()
    if (c === '"') {
      let out = ''
      this.i++
      for (;;) {
        const end = this.s.indexOf('"', this.i)
        if (end === -1) return undefined
        out += this.s.slice(this.i, end)
        this.i = end + 1
        if (this.s[this.i] === '"') { out += '"'; this.i++ } else break
      }
      return out === '' ? undefined : out
    }
    if ((c === 'u' || c === 'U') && this.s[this.i + 1] === '&') return undefined
    const w = this.word()
    return w === '' ? undefined : w
  }

  /** `name`, `schema.name` or `db.schema.name`. */
  qualifiedName (): string[] | undefined {
    const parts: string[] = []
    for (;;) {
      const id = this.identifier()
      if (id === undefined) return undefined
      parts.push(id)
      this.space()
      if (this.peek() !== '.') break
      this.i++
      if (parts.length === 3) return undefined
    }
    return parts
  }

  /** Skips one quoted literal, quoted identifier or dollar-quoted string starting here; false if none. */
  private literal (): boolean {
    const s = this.s
    const c = s[this.i]
    if (c === '\'') {
      const escapes = this.i > 0 && (s[this.i - 1] === 'E' || s[this.i - 1] === 'e')
      this.i++
      while (this.i < s.length) {
        const d = s[this.i]
        if (escapes && d === '\\') this.i += 2
        else if (d === '\'') {
          if (s[this.i + 1] === '\'') this.i += 2
          else { this.i++; return true }
        } else this.i++
      }
      return true
    }
    if (c === '"') {
      const end = s.indexOf('"', this.i + 1)
      this.i = end === -1 ? s.length : end + 1
      return true
    }
    if (c === '$') {
      DOLLAR_TAG.lastIndex = this.i
      const m = DOLLAR_TAG.exec(s)
      if (m === null) return false
      const end = s.indexOf(m[0], this.i + m[0].length)
      this.i = end === -1 ? s.length : end + m[0].length
      return true
    }
    return false
  }

  /** At `(`: skips to after the matching `)`. */
  balanced (): boolean {
    if (this.peek() !== '(') return false
    let depth = 0
    while (this.i < this.s.length) {
      this.space()
      const c = this.s[this.i]
      if (c === '(') { depth++; this.i++ } else if (c === ')') {
        depth--
        this.i++
        if (depth === 0) return true
      } else if (!this.literal()) this.i++
    }
    return false
  }

  /** Skips to just after the next top-level `;` (or the end). */
  statementEnd (): void {
    let depth = 0
    while (this.i < this.s.length) {
      this.space()
      const c = this.s[this.i]
      if (c === undefined) return
      if (c === '(') depth++
      else if (c === ')') depth--
      else if (c === ';' && depth <= 0) { this.i++; return }
      if (!this.literal()) this.i++
    }
  }
}

function tableName (parts: string[], defaultSchema: string): string {
  const table = parts[parts.length - 1]!
  const schema = parts.length > 1 ? parts[parts.length - 2]! : undefined
  return schema === undefined || schema === defaultSchema ? table : `${schema}.${table}`
}

/** After the target name: only what may follow it in valid SQL (alias, column list, clause keyword, `*`, end). */
function plausibleEnd (sc: Scanner): boolean {
  sc.space()
  const c = sc.peek()
  return c === '' || c === ';' || c === '(' || c === '*' || WORD_START.test(c)
}

function statement (sc: Scanner, defaultSchema: string): ModelStatement | undefined {
  let head = sc.word()
  if (head === 'with') {
    const save = sc.i
    if (sc.word() !== 'recursive') sc.i = save
    for (;;) {
      if (sc.identifier() === undefined) return undefined
      sc.space()
      if (sc.peek() === '(' && !sc.balanced()) return undefined
      if (sc.word() !== 'as') return undefined
      const at = sc.i
      let w = sc.word()
      if (w === 'not') w = sc.word()
      if (w !== 'materialized') sc.i = at
      sc.space()
      if (!sc.balanced()) return undefined
      sc.space()
      if (sc.peek() !== ',') break
      sc.i++
    }
    head = sc.word()
  }
  let op: Operation
  if (head === 'insert') {
    if (sc.word() !== 'into') return undefined
    op = 'INSERT'
  } else if (head === 'update') {
    op = 'UPDATE'
  } else if (head === 'delete') {
    if (sc.word() !== 'from') return undefined
    op = 'DELETE'
  } else return undefined
  if (op !== 'INSERT') {
    const at = sc.i
    if (sc.word() !== 'only') sc.i = at
  }
  const parts = sc.qualifiedName()
  if (parts === undefined || !plausibleEnd(sc)) return undefined
  return { op, table: tableName(parts, defaultSchema), schema: parts.length > 1 ? parts[parts.length - 2] : undefined, name: parts[parts.length - 1]! }
}

/** The data-changing target of the first statement of `text`, or undefined. */
export function parseStatement (text: string, defaultSchema = 'public'): ModelStatement | undefined {
  return statement(new Scanner(text), defaultSchema)
}

/** The targets of the first `count` statements of a multi-statement text. */
export function parseStatements (text: string, count: number, defaultSchema = 'public'): Array<ModelStatement | undefined> {
  const sc = new Scanner(text)
  const out: Array<ModelStatement | undefined> = []
  while (out.length < count && !sc.done) {
    const start = sc.i
    out.push(statement(sc, defaultSchema))
    sc.i = start
    sc.statementEnd()
    sc.space()
  }
  return out
}

/** Parses through a bounded cache: apps send the same parameterised texts again and again. */
export class StatementCache {
  private readonly map = new Map<string, ModelStatement | null>()
  private readonly multi = new Map<string, Array<ModelStatement | undefined>>()
  constructor (private readonly defaultSchema = 'public', private readonly max = 1000, private readonly maxLength = 4096) {}

  get (text: string): ModelStatement | undefined {
    const hit = this.map.get(text)
    if (hit !== undefined) return hit ?? undefined
    const parsed = parseStatement(text, this.defaultSchema)
    if (text.length <= this.maxLength) {
      if (this.map.size >= this.max) this.map.clear()
      this.map.set(text, parsed ?? null)
    }
    return parsed
  }

  many (text: string, count: number): Array<ModelStatement | undefined> {
    const key = `${count}\u0000${text}`
    const hit = this.multi.get(key)
    if (hit !== undefined) return hit
    const parsed = parseStatements(text, count, this.defaultSchema)
    if (text.length <= this.maxLength) {
      if (this.multi.size >= this.max) this.multi.clear()
      this.multi.set(key, parsed)
    }
    return parsed
  }
}
