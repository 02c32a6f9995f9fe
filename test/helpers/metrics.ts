import type { FastifyInstance } from 'fastify'

/** A small parser of the Prometheus text format, for checking the real /metrics output. */
export interface Exposition {
  /** `name{a="1",b="2"}` (labels sorted) → value */
  samples: Map<string, number>
  help: Map<string, string>
  type: Map<string, string>
  lines: string[]
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g
const LABEL_LIST = /^[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*$/

/** Label names must be valid and unique, as Prometheus requires to accept a scrape. */
function checkLabels (line: string, raw: string | undefined): void {
  if (raw === undefined) return
  if (!LABEL_LIST.test(raw)) throw new Error(`invalid label list in line: ${line}`)
  const names = [...raw.matchAll(LABEL)].map((m) => m[1]!)
  if (new Set(names).size !== names.length) throw new Error(`duplicate label names in line: ${line}`)
  if (names.some((n) => n.startsWith('__'))) throw new Error(`reserved label name in line: ${line}`)
}

export function parseLabels (raw: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {}
  if (raw === undefined) return labels
  for (const m of raw.matchAll(LABEL)) labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => c === 'n' ? '\n' : c)
  return labels
}

export function key (name: string, labels: Record<string, string> = {}): string {
  const escape = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
  const pairs = Object.keys(labels).sort().map((k) => `${k}="${escape(labels[k]!)}"`)
  return pairs.length === 0 ? name : `${name}{${pairs.join(',')}}`
}

export function parse (text: string): Exposition {
  const out: Exposition = { samples: new Map(), help: new Map(), type: new Map(), lines: text.split('\n') }
  for (const line of out.lines) {
    if (line === '') continue
    if (line.startsWith('# HELP ')) {
      const [, name, ...rest] = line.slice(2).split(' ')
      out.help.set(name!, rest.join(' '))
      continue
    }
    if (line.startsWith('# TYPE ')) {
      const [, name, type] = line.slice(2).split(' ')
      out.type.set(name!, type!)
      continue
    }
    if (line.startsWith('#')) continue
    const m = SAMPLE.exec(line)
    if (m === null) throw new Error(`unparseable exposition line: ${JSON.stringify(line)}`)
    checkLabels(line, m[3])
    const value = m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : Number(m[4])
    if (Number.isNaN(value) && m[4] !== 'NaN') throw new Error(`bad value in line: ${line}`)
    const k = key(m[1]!, parseLabels(m[3]))
    if (out.samples.has(k)) throw new Error(`duplicate series: ${k}`)
    out.samples.set(k, value)
  }
  return out
}

/** Every series of a family (sample name), as label sets with values. */
export function series (exposition: Exposition, name: string): Array<{ labels: Record<string, string>, value: number }> {
  const result: Array<{ labels: Record<string, string>, value: number }> = []
  for (const [k, value] of exposition.samples) {
    const brace = k.indexOf('{')
    const n = brace === -1 ? k : k.slice(0, brace)
    if (n === name) result.push({ labels: parseLabels(brace === -1 ? undefined : k.slice(brace + 1, -1)), value })
  }
  return result
}

/** One backend's cache series, under django-prometheus's names and the guide's, from exposition text. */
export function cacheCounts (text: string, backend: string): Record<string, number | undefined> {
  const { samples } = parse(text)
  const get = (name: string) => samples.get(key(name, { backend }))
  return {
    total: get('django_cache_get_total'),
    hits: get('django_cache_get_hits_total'),
    misses: get('django_cache_get_misses_total'),
    fail: get('django_cache_get_fail_total'),
    guideHits: get('django_cache_hits_total'),
    guideMisses: get('django_cache_misses_total')
  }
}

/** The app's `/metrics` through `inject()`, parsed; a scrape that is not answered 200 throws. */
export async function scrape (app: Pick<FastifyInstance, 'inject'>): Promise<Exposition> {
  const response = await app.inject('/metrics')
  if (response.statusCode !== 200) throw new Error(`scrape answered ${response.statusCode}`)
  return parse(response.body)
}
