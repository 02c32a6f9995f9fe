"""Prints lib/db/sqlstate.ts: the exception class psycopg2 raises for each SQLSTATE.

django-prometheus labels django_db_errors_total{type} with the class of the exception the
driver raised (type(e).__name__). On PostgreSQL that is psycopg2's: a class per SQLSTATE
(UniqueViolation for 23505...), and for a code it has no class for, the DB-API class it
picks by the code's prefix. Both come from the installed psycopg2 here, not from memory.

    /usr/bin/python3 scripts/sqlstate-table.py > lib/db/sqlstate.ts

Debian's python3-psycopg2 provides the module (the `python3` of a pyenv or venv usually
has no psycopg2). test/db-sqlstate.test.ts runs this script and compares its output with
the committed file.
"""

import sys

try:
    import psycopg2
    import psycopg2.extensions
    from psycopg2 import errorcodes, errors
except ImportError as err:
    sys.exit(f'sqlstate-table.py: psycopg2 is not importable by {sys.executable} ({err}); '
             'install python3-psycopg2 and run it with /usr/bin/python3')

# psycopg2's base_exception_from_sqlstate() (psycopg/error_type.c, 2.8 and later) as data:
# the class of a SQLSTATE without a class of its own, by the code's first two characters,
# else by its first character, else DatabaseError. It is C code, so it cannot be read from
# the module: main() checks this copy against the module, because psycopg2 derives the class
# of every known SQLSTATE from the same function (the known class's base is its answer).
BY_CLASS = {
    '08': 'OperationalError',   # connection exception
    '0A': 'NotSupportedError',  # feature not supported
    '20': 'ProgrammingError',   # case not found
    '21': 'ProgrammingError',   # cardinality violation
    '22': 'DataError',          # data exception
    '23': 'IntegrityError',     # integrity constraint violation
    '24': 'InternalError',      # invalid cursor state
    '25': 'InternalError',      # invalid transaction state
    '26': 'OperationalError',   # invalid SQL statement name
    '27': 'OperationalError',   # triggered data change violation
    '28': 'OperationalError',   # invalid authorization specification
    '2B': 'InternalError',      # dependent privilege descriptors still exist
    '2D': 'InternalError',      # invalid transaction termination
    '2F': 'InternalError',      # SQL routine exception
    '34': 'OperationalError',   # invalid cursor name
    '38': 'InternalError',      # external routine exception
    '39': 'InternalError',      # external routine invocation exception
    '3B': 'InternalError',      # savepoint exception
    '3D': 'ProgrammingError',   # invalid catalog name
    '3F': 'ProgrammingError',   # invalid schema name
    '40': 'TransactionRollbackError',  # transaction rollback (psycopg2.extensions)
    '42': 'ProgrammingError',   # syntax error or access rule violation
    '44': 'ProgrammingError',   # WITH CHECK OPTION violation
}
BY_FIRST_CHARACTER = {
    '5': 'OperationalError',    # 53-58: resources, limits, prerequisite state, operator intervention, system
    'F': 'InternalError',       # F0 configuration file error
    'H': 'OperationalError',    # HV foreign data wrapper error
    'P': 'InternalError',       # P0 PL/pgSQL error
    'X': 'InternalError',       # XX internal error
}
# The one exact code in the C function; it has a class of its own (QueryCanceled), checked below.
BY_CODE = {'57014': 'QueryCanceledError'}
OTHERWISE = 'DatabaseError'
VERSION = psycopg2.__version__.split()[0]


def fallback(code):
    return BY_CODE.get(code) or BY_CLASS.get(code[:2]) or BY_FIRST_CHARACTER.get(code[0]) or OTHERWISE


def fail(message):
    sys.exit(f'sqlstate-table.py: {message}')


def main():
    for name in [*BY_CLASS.values(), *BY_FIRST_CHARACTER.values(), *BY_CODE.values(), OTHERWISE]:
        if not any(isinstance(getattr(module, name, None), type) for module in (psycopg2, psycopg2.extensions)):
            fail(f'psycopg2 {VERSION} has no exception class {name}')

    codes = sorted({value for key, value in vars(errorcodes).items()
                    if key.isupper() and not key.startswith('CLASS_') and isinstance(value, str) and len(value) == 5})
    classes = {}
    for code in codes:
        try:
            cls = errors.lookup(code)
        except KeyError:
            continue  # success and warning codes (00000, 01xxx) and retired ones: the fallback applies
        base = cls.__bases__[0].__name__
        if base != fallback(code):
            fail(f'psycopg2 {VERSION} derives {cls.__name__} ({code}) from {base}, '
                 f'this script\'s copy of its fallback rule says {fallback(code)}: update BY_CLASS / BY_FIRST_CHARACTER')
        classes[code] = cls.__name__
    if len(classes) < 200:
        fail(f'only {len(classes)} SQLSTATE classes found in psycopg2 {VERSION}')
    for code in BY_CODE:
        if code not in classes:
            fail(f'{code} has no class of its own in psycopg2 {VERSION}: the fallback needs it')

    def entries(table):
        return '\n'.join(f"  ['{key}', '{value}']," for key, value in sorted(table.items())).rstrip(',')

    print(f'''// Generated by scripts/sqlstate-table.py from psycopg2 {VERSION}: do not edit.
// Regenerate with `/usr/bin/python3 scripts/sqlstate-table.py > lib/db/sqlstate.ts`
// (Debian's python3-psycopg2); test/db-sqlstate.test.ts checks that the two agree.

/** The psycopg2 release these tables come from. */
export const PSYCOPG2_VERSION = '{VERSION}'

/** SQLSTATE → the class psycopg2 raises for it (`psycopg2.errors.lookup(code).__name__`). */
export const SQLSTATE_CLASSES: ReadonlyMap<string, string> = new Map([
{entries(classes)}
])

/**
 * For a SQLSTATE without a class of its own, psycopg2 raises a DB-API class chosen by the
 * code's first two characters (this table), else by its first character (the next one),
 * else `{OTHERWISE}`.
 */
export const FALLBACK_BY_CLASS: ReadonlyMap<string, string> = new Map([
{entries(BY_CLASS)}
])

export const FALLBACK_BY_FIRST_CHARACTER: ReadonlyMap<string, string> = new Map([
{entries(BY_FIRST_CHARACTER)}
])

export const FALLBACK_OTHERWISE = '{OTHERWISE}'
''', end='')


main()
