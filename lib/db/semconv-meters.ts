import {
  createNoopMeter,
  type Attributes, type Histogram, type Meter, type MeterProvider, type MetricOptions, type UpDownCounter
} from '@opentelemetry/api'

interface FanoutTarget {
  readonly provider: MeterProvider
  readonly meter: Meter
}

/**
 * Routes the instrumentation's own semantic-convention instruments (`db.client.*`), created once
 * on this provider, to the meter providers of the instances that asked for them (`db.semconvMetrics`).
 */
export class FanoutMeterProvider implements MeterProvider {
  readonly targets: FanoutTarget[] = []
  private readonly created: Array<{ kind: 'histogram' | 'updown', name: string, options: MetricOptions | undefined, per: Map<MeterProvider, Histogram | UpDownCounter> }> = []
  private readonly meter: Meter

  constructor (private readonly scope: string, private readonly version: string) {
    const noop = createNoopMeter()
    const self = this
    this.meter = Object.assign(Object.create(noop) as Meter, {
      createHistogram (name: string, options?: MetricOptions): Histogram {
        const entry = self.track('histogram', name, options)
        return { record (value: number, attributes?: Attributes) { for (const i of entry.per.values()) (i as Histogram).record(value, attributes) } }
      },
      createUpDownCounter (name: string, options?: MetricOptions): UpDownCounter {
        const entry = self.track('updown', name, options)
        return { add (value: number, attributes?: Attributes) { for (const i of entry.per.values()) (i as UpDownCounter).add(value, attributes) } }
      }
    })
  }

  get active (): boolean {
    return this.targets.length > 0
  }

  getMeter (): Meter {
    return this.meter
  }

  private track (kind: 'histogram' | 'updown', name: string, options: MetricOptions | undefined) {
    const previous = this.created.findIndex((c) => c.name === name)
    if (previous !== -1) this.created.splice(previous, 1)
    const entry = { kind, name, options, per: new Map<MeterProvider, Histogram | UpDownCounter>() }
    for (const t of this.targets) entry.per.set(t.provider, this.instrument(t.meter, kind, name, options))
    this.created.push(entry)
    return entry
  }

  private instrument (meter: Meter, kind: 'histogram' | 'updown', name: string, options: MetricOptions | undefined): Histogram | UpDownCounter {
    return kind === 'histogram' ? meter.createHistogram(name, options) : meter.createUpDownCounter(name, options)
  }

  add (provider: MeterProvider): void {
    const meter = provider.getMeter(this.scope, this.version)
    this.targets.push({ provider, meter })
    for (const c of this.created) c.per.set(provider, this.instrument(meter, c.kind, c.name, c.options))
  }

  remove (provider: MeterProvider): void {
    const at = this.targets.findIndex((t) => t.provider === provider)
    if (at !== -1) this.targets.splice(at, 1)
    for (const c of this.created) c.per.delete(provider)
  }
}

const SQL_COMMANDS = new Set([
  'ABORT', 'ALTER', 'ANALYZE', 'BEGIN', 'CALL', 'CHECKPOINT', 'CLOSE', 'CLUSTER', 'COMMENT', 'COMMIT', 'COPY', 'CREATE',
  'DEALLOCATE', 'DECLARE', 'DELETE', 'DISCARD', 'DO', 'DROP', 'END', 'EXECUTE', 'EXPLAIN', 'FETCH', 'GRANT', 'IMPORT',
  'INSERT', 'LISTEN', 'LOAD', 'LOCK', 'MERGE', 'MOVE', 'NOTIFY', 'PREPARE', 'REASSIGN', 'REFRESH', 'REINDEX', 'RELEASE',
  'RESET', 'REVOKE', 'ROLLBACK', 'SAVEPOINT', 'SECURITY', 'SELECT', 'SET', 'SHOW', 'START', 'TABLE', 'TRUNCATE',
  'UNLISTEN', 'UPDATE', 'VACUUM', 'VALUES', 'WITH'
])

/** The stock operation name is the text's first word: for odd texts, SQL in a label. Any other word becomes `OTHER`. */
export function limitOperationName (attributes: Record<string, unknown>): void {
  const op = attributes['db.operation.name']
  if (typeof op === 'string' && !SQL_COMMANDS.has(op)) attributes['db.operation.name'] = 'OTHER'
}
