import { FALLBACK_BY_CLASS, FALLBACK_BY_FIRST_CHARACTER, FALLBACK_OTHERWISE, SQLSTATE_CLASSES } from './sqlstate'

const SQLSTATE = /^[0-9A-Z]{5}$/
/** Node's system error codes (EPIPE, EBADF…) can look like a SQLSTATE. */
const ERRNO = /^E[A-Z]+$/
/** A message pg gives when the client or its connection is gone (no SQLSTATE). */
const CLOSED = /not queryable|closed|ended|terminated/i

/**
 * The `type` label of django_db_errors_total: the class psycopg2 raises, which is what
 * django-prometheus records (`type(e).__name__` inside its cursor wrapper, before Django
 * re-wraps it). A SQLSTATE gives psycopg2's class for it (`UniqueViolation` for 23505), or
 * for a code it has no class for the DB-API class it picks by prefix; the tables are
 * generated from psycopg2 itself (sqlstate.ts). `fromServer`: pg says the server sent the
 * error (its DatabaseError is named `error`), so `code` is a SQLSTATE even if it looks like
 * an errno. `message` is only classified, never kept.
 */
export function errorType (code: string | undefined, message: string | undefined, fromServer = false): string {
  if (code !== undefined && SQLSTATE.test(code) && (fromServer || !ERRNO.test(code))) {
    return SQLSTATE_CLASSES.get(code) ??
      FALLBACK_BY_CLASS.get(code.slice(0, 2)) ??
      FALLBACK_BY_FIRST_CHARACTER.get(code[0]!) ??
      FALLBACK_OTHERWISE
  }
  // No SQLSTATE: the failure happened in the client or on the socket, where psycopg2 raises
  // InterfaceError (connection already closed) or OperationalError (server gone, timeout).
  return message !== undefined && CLOSED.test(message) && !/unexpectedly|timeout/i.test(message) ? 'InterfaceError' : 'OperationalError'
}

/** psycopg2's two DB-API subclasses in psycopg2.extensions, re-raised by Django as their base. */
const DJANGO_BASE = new Map([['TransactionRollbackError', 'OperationalError'], ['QueryCanceledError', 'OperationalError']])

/**
 * The `django.db` class Django raises for an error PostgreSQL sent (pg's `DatabaseError`, named
 * `error`, with a SQLSTATE `code`): Django's DatabaseErrorWrapper re-raises psycopg2's exception
 * as the django.db class of its DB-API base, which psycopg2 picks by the code's prefix (every
 * psycopg2 class for a SQLSTATE derives from the DB-API class of its prefix, as sqlstate-table.py
 * checks). `undefined` for anything else.
 */
export function djangoDatabaseError (error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined
  const { code, name, severity } = error as { code?: unknown, name?: unknown, severity?: unknown }
  if (name !== 'error' || typeof severity !== 'string' || typeof code !== 'string' || !SQLSTATE.test(code)) return undefined
  const base = FALLBACK_BY_CLASS.get(code.slice(0, 2)) ?? FALLBACK_BY_FIRST_CHARACTER.get(code[0]!) ?? FALLBACK_OTHERWISE
  return DJANGO_BASE.get(base) ?? base
}
