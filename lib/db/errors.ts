/**
 * The DB-API exception class a Django app on psycopg would have seen for an error,
 * from its SQLSTATE: psycopg maps each SQLSTATE class to one of the PEP 249 classes,
 * and Django re-raises it as `django.db.utils.<same name>`. Dashboards keyed on
 * `type="IntegrityError"` and friends keep working.
 */
export type DjangoDbError =
  | 'DataError' | 'OperationalError' | 'IntegrityError' | 'InternalError'
  | 'ProgrammingError' | 'NotSupportedError' | 'DatabaseError' | 'InterfaceError'

/** SQLSTATE class (first two characters) → exception class, as psycopg's table. */
const BY_CLASS: Record<string, DjangoDbError> = {
  '08': 'OperationalError', // connection exception
  '0A': 'NotSupportedError', // feature not supported
  20: 'ProgrammingError', // case not found
  21: 'ProgrammingError', // cardinality violation
  22: 'DataError', // data exception (invalid input, division by zero, out of range)
  23: 'IntegrityError', // integrity constraint violation (unique, foreign key, not null, check)
  24: 'InternalError', // invalid cursor state
  25: 'InternalError', // invalid transaction state (e.g. in failed transaction)
  26: 'OperationalError', // invalid SQL statement name
  27: 'OperationalError', // triggered data change violation
  28: 'OperationalError', // invalid authorization specification
  '2B': 'InternalError',
  '2D': 'InternalError',
  '2F': 'InternalError',
  34: 'OperationalError', // invalid cursor name
  38: 'InternalError',
  39: 'InternalError',
  '3B': 'InternalError', // savepoint exception
  '3D': 'ProgrammingError', // invalid catalog name
  '3F': 'ProgrammingError', // invalid schema name
  40: 'OperationalError', // transaction rollback: serialization failure, deadlock
  42: 'ProgrammingError', // syntax error or access rule violation (undefined table, …)
  44: 'ProgrammingError', // WITH CHECK OPTION violation
  53: 'OperationalError', // insufficient resources
  54: 'OperationalError', // program limit exceeded
  55: 'OperationalError', // object not in prerequisite state
  57: 'OperationalError', // operator intervention (query canceled, admin shutdown)
  58: 'OperationalError', // system error
  F0: 'InternalError',
  HV: 'OperationalError',
  P0: 'InternalError', // PL/pgSQL raise
  XX: 'InternalError'
}

const SQLSTATE = /^[0-9A-Z]{5}$/

/** A message pg gives when the client or its connection is gone (no SQLSTATE). */
const CLOSED = /not queryable|closed|ended|terminated/i

/** `code` is the error's SQLSTATE when the server sent one; `message` is only classified, never kept. */
export function djangoErrorType (code: string | undefined, message: string | undefined): DjangoDbError {
  if (code !== undefined && SQLSTATE.test(code)) {
    const byClass = BY_CLASS[code.slice(0, 2)]
    if (byClass !== undefined) return byClass
    // Node socket errors (EPIPE, ECONNRESET…) also look like codes; SQLSTATE classes never start with E.
    if (code[0] !== 'E') return 'DatabaseError'
  }
  // No SQLSTATE: the failure happened in the client or on the socket, as psycopg's
  // InterfaceError (connection already closed) or OperationalError (server gone, timeout).
  return message !== undefined && CLOSED.test(message) && !/unexpectedly|timeout/i.test(message) ? 'InterfaceError' : 'OperationalError'
}
