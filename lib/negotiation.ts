import type { ExpositionFormat } from './exposition'

/**
 * What a scraper asked for, from its `Accept` and `Accept-Encoding` headers (RFC 9110 §12.5).
 * Prometheus asks for OpenMetrics first (`application/openmetrics-text;version=1.0.0,…;q=0.75,
 * text/plain;version=0.0.4;q=0.5,*\/*;q=0.1`); curl and browsers send `*\/*`, which keeps text.
 */

interface MediaRange { type: string, subtype: string, version: string | undefined, q: number }

/** RFC 9110's qvalue: 0 to 1 with at most three decimals; anything else makes the range void. */
const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/

function unquote (value: string): string {
  return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1).replace(/\\(.)/g, '$1') : value
}

function mediaRanges (accept: string): MediaRange[] {
  const ranges: MediaRange[] = []
  for (const element of accept.split(',')) {
    const [media = '', ...params] = element.split(';')
    const [type = '', subtype = ''] = media.trim().toLowerCase().split('/')
    if (type === '' || subtype === '') continue
    let q = 1
    let version: string | undefined
    for (const param of params) {
      const at = param.indexOf('=')
      if (at === -1) continue
      const name = param.slice(0, at).trim().toLowerCase()
      const value = unquote(param.slice(at + 1).trim())
      if (name === 'q') q = QVALUE.test(value) ? Number(value) : -1
      else if (name === 'version') version = value
    }
    if (q >= 0) ranges.push({ type, subtype, version, q })
  }
  return ranges
}

/**
 * The quality the ranges give a media type: the most specific matching range decides
 * (type/subtype with a version, then type/subtype, then type/*, then *\/*); 0 when none matches.
 */
function quality (ranges: readonly MediaRange[], type: string, subtype: string, versions: readonly string[]): { q: number, explicit: boolean } {
  let best = { specificity: -1, q: 0 }
  for (const range of ranges) {
    let specificity: number
    if (range.type === type && range.subtype === subtype) {
      if (range.version !== undefined && !versions.includes(range.version)) continue
      specificity = range.version === undefined ? 2 : 3
    } else if (range.type === type && range.subtype === '*') specificity = 1
    else if (range.type === '*' && range.subtype === '*') specificity = 0
    else continue
    if (specificity > best.specificity || (specificity === best.specificity && range.q > best.q)) best = { specificity, q: range.q }
  }
  return { q: best.q, explicit: best.specificity >= 2 }
}

/**
 * OpenMetrics when the scraper names `application/openmetrics-text` (version 1.0.0, 0.0.1 or none:
 * Prometheus parses both versions alike) and prefers it at least as much as text; text otherwise,
 * also when it accepts neither (as prometheus_client does).
 */
export function negotiateFormat (accept: string | undefined): ExpositionFormat {
  if (accept === undefined || !accept.toLowerCase().includes('openmetrics')) return 'text'
  const ranges = mediaRanges(accept)
  const openMetrics = quality(ranges, 'application', 'openmetrics-text', ['1.0.0', '0.0.1'])
  const text = quality(ranges, 'text', 'plain', ['0.0.4', '1.0.0'])
  return openMetrics.explicit && openMetrics.q > 0 && openMetrics.q >= text.q ? 'openmetrics' : 'text'
}

/** Whether `Accept-Encoding` accepts gzip (`gzip`, `x-gzip` or `*` with a non-zero quality). */
export function acceptsGzip (acceptEncoding: string | undefined): boolean {
  if (acceptEncoding === undefined) return false
  let gzip: number | undefined
  let any: number | undefined
  for (const element of acceptEncoding.split(',')) {
    const [coding = '', ...params] = element.split(';')
    const name = coding.trim().toLowerCase()
    let q = 1
    for (const param of params) {
      const [key = '', value = ''] = param.split('=').map((s) => s.trim())
      if (key.toLowerCase() === 'q') q = QVALUE.test(value) ? Number(value) : 0
    }
    if (name === 'gzip' || name === 'x-gzip') gzip = Math.max(gzip ?? 0, q)
    else if (name === '*') any = q
  }
  return (gzip ?? any ?? 0) > 0
}
