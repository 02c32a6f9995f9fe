import type { Faults } from '../faults'
import type { Cell, HistogramCell } from '../store'
import type { DbConnectionInfo } from '../types'

/**
 * One alias's series, each created on its first count: a series appears only then, as a
 * prometheus_client child does (a refused connection creates no execute or duration series).
 */
export interface AliasCells {
  readonly alias: string
  execute: Cell | undefined
  duration: HistogramCell | undefined
  newConnections: Cell | undefined
  newConnectionErrors: Cell | undefined
  readonly errors: Map<string, Cell>
}

function cellsFor (alias: string): AliasCells {
  return { alias, execute: undefined, duration: undefined, newConnections: undefined, newConnectionErrors: undefined, errors: new Map() }
}

/** The `alias` label of each connection (`db.alias`: a name, or a function of the connection), remembered for 1000 connections. */
export class ConnectionAliases {
  private fixed: AliasCells | undefined
  private readonly byConnection = new Map<string, AliasCells>()

  constructor (private readonly option: string | ((connection: DbConnectionInfo) => string), private readonly faults: Faults) {}

  cells (database: unknown, host: unknown, port: unknown): AliasCells {
    if (typeof this.option === 'string') {
      this.fixed ??= cellsFor(this.option)
      return this.fixed
    }
    const key = `${String(host)}\u0000${String(port)}\u0000${String(database)}`
    let found = this.byConnection.get(key)
    if (found === undefined) {
      found = cellsFor(this.choose(this.option, database, host, port))
      if (this.byConnection.size < 1000) this.byConnection.set(key, found)
    }
    return found
  }

  private choose (option: (connection: DbConnectionInfo) => string, database: unknown, host: unknown, port: unknown): string {
    try {
      const chosen = option({
        database: typeof database === 'string' ? database : undefined,
        host: typeof host === 'string' ? host : undefined,
        port: typeof port === 'number' ? port : undefined
      })
      if (typeof chosen === 'string' && chosen !== '') return chosen
    } catch (err) {
      this.faults.report(err)
    }
    return 'default'
  }
}
