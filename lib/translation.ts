/**
 * The OpenTelemetry → Prometheus name translation the rest of the ecosystem applies
 * (Prometheus's OTLP receiver and the Collector's exporters, through prometheus/otlptranslator,
 * with its default strategy UnderscoreEscapingWithSuffixes), so that an instrument's name on
 * `/metrics` is the name the same instrument gets when pushed over OTLP.
 * Only names of OpenTelemetry SDK instruments are translated; the store's django families
 * keep their exact names.
 */

import type { AttributeValue } from '@opentelemetry/api'

/** How the instrument's points are exposed: a monotonic sum is a counter, a non-monotonic one a gauge. */
export type InstrumentKind = 'counter' | 'updowncounter' | 'gauge' | 'histogram'

/** UCUM units to the Prometheus base-unit words (otlptranslator's table). */
export const UNITS: Readonly<Record<string, string>> = {
  d: 'days',
  h: 'hours',
  min: 'minutes',
  s: 'seconds',
  ms: 'milliseconds',
  us: 'microseconds',
  ns: 'nanoseconds',
  By: 'bytes',
  KiBy: 'kibibytes',
  MiBy: 'mebibytes',
  GiBy: 'gibibytes',
  TiBy: 'tibibytes',
  KBy: 'kilobytes',
  MBy: 'megabytes',
  GBy: 'gigabytes',
  TBy: 'terabytes',
  m: 'meters',
  V: 'volts',
  A: 'amperes',
  J: 'joules',
  W: 'watts',
  g: 'grams',
  Cel: 'celsius',
  Hz: 'hertz',
  1: '',
  '%': 'percent'
}

export const PER_UNITS: Readonly<Record<string, string>> = { s: 'second', m: 'minute', h: 'hour', d: 'day', w: 'week', mo: 'month', y: 'year' }

const METRIC_SEPARATOR = /[^a-zA-Z0-9:]+/
const NOT_METRIC_CHAR = /[^a-zA-Z0-9:]/g
const NOT_LABEL_CHAR = /[^a-zA-Z0-9]+/g

function unitWord (unit: string | undefined, table: Readonly<Record<string, string>>): string {
  const trimmed = unit?.trim() ?? ''
  if (trimmed === '' || /[{}]/.test(trimmed)) return ''
  return table[trimmed] ?? trimmed
}

function cleanUnit (word: string): string {
  return word.replace(NOT_METRIC_CHAR, '_').replace(/_+/g, '_').replace(/^_/, '')
}

/**
 * The Prometheus family name of an instrument: characters outside `[a-zA-Z0-9:]` separate words
 * (runs of them become one `_`), the unit's word is appended unless already a word of the name
 * (`s` → `_seconds`, `By` → `_bytes`, `{request}` → nothing), `total` moves to the end of a
 * counter's name, `ratio` to the end of a unit-`1` gauge's, and a leading digit gets a `_`.
 */
export function metricName (name: string, unit: string | undefined, kind: InstrumentKind): string {
  let words = name.split(METRIC_SEPARATOR).filter((w) => w !== '')
  const [mainUnit = '', perUnit] = (unit ?? '').split(/\/(.*)/s)
  let main = cleanUnit(unitWord(mainUnit, UNITS))
  let per = perUnit === undefined ? '' : unitWord(perUnit, PER_UNITS)
  per = per === '' ? '' : cleanUnit(`per_${per}`)
  if (words.includes(main)) main = ''
  if (per === 'per_') per = ''
  else {
    per = per.replace(/_$/, '')
    if (words.includes(per)) per = ''
  }
  if (per !== '') main = main.replace(/_$/, '')
  if (main !== '') words.push(main)
  if (per !== '') words.push(per)
  if (kind === 'counter') words = [...words.filter((w) => w !== 'total'), 'total']
  if (unit === '1' && kind === 'gauge') words = [...words.filter((w) => w !== 'ratio'), 'ratio']
  const joined = words.join('_')
  return /^[0-9]/.test(joined) ? `_${joined}` : joined
}

/** Every sample name a family writes: Prometheus rejects a second family writing any of them. */
export function sampleNames (family: string, histogram: boolean): string[] {
  return histogram ? [family, `${family}_bucket`, `${family}_count`, `${family}_sum`] : [family]
}

/**
 * Label names Prometheus reserves (`__…__`), gives a meaning (`le` of histogram buckets,
 * `quantile` of summaries; promtool rejects both on other types) or cannot hold (only underscores).
 */
function isReservedLabel (label: string): boolean {
  return label === 'le' || label === 'quantile' || label.startsWith('__') || /^_*$/.test(label)
}

function translateLabel (key: string): { label: string, reserved: boolean } {
  const dunder = key.length >= 4 && key.startsWith('__') && key.endsWith('__')
  let label = (dunder ? key.slice(2, -2) : key).replace(NOT_LABEL_CHAR, '_')
  if (dunder) label = `__${label}__`
  if (/^[0-9]/.test(label)) label = `key_${label}`
  if (!isReservedLabel(label)) return { label, reserved: false }
  return { label: `key_${label.replace(/^_+|_+$/g, '')}`, reserved: true }
}

/**
 * The Prometheus label name of an attribute key: characters outside `[a-zA-Z0-9]` become `_`
 * (runs of them one `_`), a leading digit gets `key_`. A reserved result gets `key_` before its
 * word instead (`le` → `key_le`, `__name__` → `key_name`, `.` → `key_`).
 */
export function labelName (key: string): string {
  return translateLabel(key).label
}

/** Whether an attribute key is renamed to `labelName(key)` before it is recorded, for /metrics and OTLP alike. */
export function isReservedKey (key: string): boolean {
  return translateLabel(key).reserved
}

/** An attribute value as a label value: strings as they are, anything else as JSON (`true`, `42`, `["a","b"]`). */
export function labelValue (value: AttributeValue | undefined): string {
  return typeof value === 'string' ? value : JSON.stringify(value) ?? ''
}
