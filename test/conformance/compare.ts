/**
 * Family-by-family comparison of two Prometheus expositions (django-prometheus's and the
 * plugin's): name, TYPE, HELP, label names, label values, values and bucket bounds. What may
 * differ is decided by a list of allowances, each with its reason; the caller owns that list.
 */
import { key, parseLabels } from '../helpers/metrics'

export type Side = 'django' | 'plugin'
export type Aspect = 'missing' | 'extra' | 'type' | 'help' | 'labels' | 'series' | 'buckets' | 'value' | 'duration'

export interface Sample { name: string, labels: Record<string, string>, value: number }
export interface Family { name: string, type: string, help: string, samples: Sample[] }
export type Families = Map<string, Family>

export interface Difference {
  scrape: string
  family: string
  aspect: Aspect
  detail: string
}

/** What the adjustments may know about the run up to one scrape. */
export interface ScrapeContext {
  scrape: string
  /** Each side's first scrape, taken before any request. */
  baseline: Record<Side, Families>
  /** Byte length of each side's earlier scrape responses (they count in the response-size histogram). */
  scrapeBytes: Record<Side, number[]>
  /** Requests sent before this scrape that saved a duplicate claim through the model (caught as a 409). */
  failedInserts: number
  /** Requests sent before this scrape whose database statement failed (duplicate keys), caught or not. */
  failedQueries: number
}

export interface Allowance {
  /** Families it applies to (exposed names, as on the TYPE line). */
  families: RegExp
  reason: string
  /** Differences of these aspects are tolerated (narrowed by `when`). */
  aspects?: Aspect[]
  when?: (difference: Difference) => boolean
  /** Rewrites one side's family before the comparison; whatever still differs must be allowed otherwise. */
  adjust?: (family: Family, side: Side, context: ScrapeContext) => Family
  /** A measurement of two different processes (durations, memory): never compared, not a difference. */
  measured?: boolean
}

export interface FamilyResult {
  family: string
  /** The allowances that explained a difference. */
  allowed: Set<Allowance>
  unexplained: Difference[]
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/

/** Groups an exposition into families: the samples after each TYPE line belong to it. */
export function parseFamilies (text: string): Families {
  const families: Families = new Map()
  let current: Family | undefined
  const family = (name: string): Family => {
    let found = families.get(name)
    if (found === undefined) {
      found = { name, type: 'untyped', help: '', samples: [] }
      families.set(name, found)
    }
    current = found
    return found
  }
  for (const line of text.split('\n')) {
    if (line === '') continue
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line)
    if (meta !== null) {
      const f = family(meta[2]!)
      if (meta[1] === 'HELP') f.help = meta[3]!.replace(/\\n/g, '\n').replace(/\\\\/g, '\\')
      else f.type = meta[3]!
      continue
    }
    if (line.startsWith('#')) continue
    const m = LINE.exec(line)
    if (m === null) throw new Error(`unparseable exposition line: ${JSON.stringify(line)}`)
    const name = m[1]!
    const owner = current !== undefined && belongs(name, current) ? current : family(name)
    const raw = m[4]!
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw)
    owner.samples.push({ name, labels: parseLabels(m[3]), value })
  }
  return families
}

function belongs (sample: string, family: Family): boolean {
  if (sample === family.name) return true
  if (family.type !== 'histogram') return false
  return ['_bucket', '_count', '_sum'].some((suffix) => sample === family.name + suffix)
}

interface Series {
  labels: Record<string, string>
  value?: number
  count?: number
  sum?: number
  /** `le` → cumulative count, in exposition order */
  buckets: Map<string, number>
}

function seriesOf (family: Family): Map<string, Series> {
  const all = new Map<string, Series>()
  for (const sample of family.samples) {
    const { le, ...labels } = sample.labels
    const id = key('', labels)
    let s = all.get(id)
    if (s === undefined) {
      s = { labels, buckets: new Map() }
      all.set(id, s)
    }
    if (sample.name.endsWith('_bucket') && le !== undefined) s.buckets.set(le, sample.value)
    else if (sample.name === `${family.name}_count`) s.count = sample.value
    else if (sample.name === `${family.name}_sum`) s.sum = sample.value
    else s.value = sample.value
  }
  return all
}

function labelNames (family: Family): string {
  const names = new Set<string>()
  for (const sample of family.samples) for (const name of Object.keys(sample.labels)) if (name !== 'le') names.add(name)
  return [...names].sort().join(',')
}

/** A latency histogram: its sums and bucket counts are durations measured in two processes. */
function measuresTime (family: Family): boolean {
  return family.type === 'histogram' && /_seconds/.test(family.name)
}

const show = (labels: Record<string, string>): string => key('', labels) || '{}'

/** Every difference between the two sides' versions of one family. */
export function compareFamily (scrape: string, django: Family | undefined, plugin: Family | undefined): Difference[] {
  const name = (django ?? plugin)!.name
  const diff = (aspect: Aspect, detail: string): Difference => ({ scrape, family: name, aspect, detail })
  // A family without samples (HELP and TYPE only) holds no data: the same as an absent one.
  if (django === undefined || plugin === undefined) {
    if ((django ?? plugin)!.samples.length === 0) return []
    return [django === undefined ? diff('extra', 'only the plugin exposes it') : diff('missing', 'only django-prometheus exposes it')]
  }
  const out: Difference[] = []
  if (django.type !== plugin.type) out.push(diff('type', `TYPE ${django.type} / ${plugin.type}`))
  if (django.help !== plugin.help) out.push(diff('help', `HELP ${JSON.stringify(django.help)} / ${JSON.stringify(plugin.help)}`))
  const [dl, pl] = [labelNames(django), labelNames(plugin)]
  if (django.samples.length > 0 && plugin.samples.length > 0 && dl !== pl) out.push(diff('labels', `labels {${dl}} / {${pl}}`))

  const [ds, ps] = [seriesOf(django), seriesOf(plugin)]
  for (const [id, s] of ds) if (!ps.has(id)) out.push(diff('series', `only django-prometheus has ${show(s.labels)}`))
  for (const [id, s] of ps) if (!ds.has(id)) out.push(diff('series', `only the plugin has ${show(s.labels)}`))
  const timed = measuresTime(django)
  let boundsReported = false
  for (const [id, d] of ds) {
    const p = ps.get(id)
    if (p === undefined) continue
    const where = show(d.labels)
    if (d.value !== p.value) out.push(diff('value', `${where} ${d.value} / ${p.value}`))
    if (d.count !== p.count) out.push(diff('value', `${where} count ${d.count} / ${p.count}`))
    const [dBounds, pBounds] = [[...d.buckets.keys()].join(','), [...p.buckets.keys()].join(',')]
    if (dBounds !== pBounds) {
      if (!boundsReported) out.push(diff('buckets', `le ${dBounds} / ${pBounds}`))
      boundsReported = true
      continue
    }
    const aspect: Aspect = timed ? 'duration' : 'value'
    if (d.sum !== p.sum) out.push(diff(aspect, `${where} sum ${d.sum} / ${p.sum}`))
    const differing = [...d.buckets].filter(([le, count]) => p.buckets.get(le) !== count)
    if (differing.length > 0) {
      const [le, count] = differing[0]!
      out.push(diff(aspect, `${where} le=${le} ${count} / ${p.buckets.get(le)}${differing.length > 1 ? ` (and ${differing.length - 1} more buckets)` : ''}`))
    }
  }
  return out
}

/** Compares one scrape of both sides, family by family, with the allowances applied. */
export function compareScrape (
  context: ScrapeContext,
  django: Families,
  plugin: Families,
  allowances: readonly Allowance[],
  used: Set<Allowance>
): FamilyResult[] {
  const names = [...new Set([...django.keys(), ...plugin.keys()])]
  return names.map((family) => {
    const applicable = allowances.filter((a) => a.families.test(family))
    let d = django.get(family)
    let p = plugin.get(family)
    const allowed = new Set<Allowance>()
    let remaining = compareFamily(context.scrape, d, p)
    if (remaining.length > 0) {
      for (const a of applicable) {
        if (a.adjust === undefined) continue
        d = d === undefined ? undefined : a.adjust(d, 'django', context)
        p = p === undefined ? undefined : a.adjust(p, 'plugin', context)
        const after = compareFamily(context.scrape, d, p)
        const details = (list: Difference[]): string => list.map((x) => x.detail).join('\n')
        if (details(after) !== details(remaining)) allowed.add(a)
        remaining = after
      }
    }
    const unexplained = remaining.filter((difference) => {
      const by = applicable.find((a) => a.aspects?.includes(difference.aspect) === true && (a.when === undefined || a.when(difference)))
      if (by !== undefined) allowed.add(by)
      return by === undefined
    })
    for (const a of allowed) used.add(a)
    return { family, allowed, unexplained }
  })
}

/** One row of the family table: a family, or a group of families (`python_*`, `*_created`, …). */
export interface TableRow {
  family: string
  status: 'match' | 'differs (allowed)' | 'differs'
  why: string
  /** For a difference not allowed: what differs (TYPE, series, value, …), without the run's numbers. */
  what?: string
}

/** Merges the results of every scrape into table rows, grouping families as `group` says. */
export function familyTable (results: FamilyResult[], group: (family: string) => string): TableRow[] {
  const rows = new Map<string, { allowed: Set<Allowance>, measured: Set<Allowance>, unexplained: Difference[], differs: boolean }>()
  for (const r of results) {
    const name = group(r.family)
    let row = rows.get(name)
    if (row === undefined) {
      row = { allowed: new Set(), measured: new Set(), unexplained: [], differs: false }
      rows.set(name, row)
    }
    for (const a of r.allowed) (a.measured === true ? row.measured : row.allowed).add(a)
    row.unexplained.push(...r.unexplained)
    if (r.unexplained.length > 0 || [...r.allowed].some((a) => a.measured !== true)) row.differs = true
  }
  return [...rows].map(([family, row]): TableRow => {
    if (row.unexplained.length > 0) {
      const details = [...new Set(row.unexplained.map((u) => u.detail))]
      const shown = details.slice(0, 3).join('; ') + (details.length > 3 ? `; … (${details.length - 3} more)` : '')
      const what = [...new Set(row.unexplained.map((u) => u.aspect))].join(', ')
      return { family, status: 'differs', why: `NOT ALLOWED: ${shown}`, what: `not allowed (${what}): a bug` }
    }
    if (row.differs) return { family, status: 'differs (allowed)', why: [...row.allowed].map((a) => a.reason).join(' ') }
    return { family, status: 'match', why: [...row.measured].map((a) => a.reason).join(' ') }
  })
}

/** The table as aligned plain text, for the test's output. */
export function plainTable (rows: TableRow[]): string {
  const width = Math.max(...rows.map((r) => r.family.length))
  const statusWidth = Math.max(...rows.map((r) => r.status.length))
  return rows.map((r) => `${r.family.padEnd(width)} | ${r.status.padEnd(statusWidth)} | ${r.why}`.trimEnd()).join('\n')
}

/** The table as markdown, for docs/metrics.md: the same from run to run (no measured numbers). */
export function markdownTable (rows: TableRow[]): string {
  const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ')
  const body = rows.map((r) => `| \`${r.family}\` | ${r.status} | ${cell(r.what ?? r.why)} |`)
  return ['| Family | Result | Why |', '| --- | --- | --- |', ...body].join('\n')
}
