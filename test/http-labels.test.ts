import t from 'tap'
import { charsetOf, cleanMethod, exceptionType, latencyMethod, semconvMethod, templateName } from '../lib/http/labels'

// The pure label functions of the HTTP families, value by value.

t.test('charsetOf: django\'s response.charset', async (t) => {
  const table: Array<[unknown, string]> = [
    [undefined, 'utf-8'],
    [42, 'utf-8'],
    ['text/html', 'utf-8'],
    ['text/html; charset=ISO-8859-1', 'ISO-8859-1'],
    ['text/html;charset="utf-8"', 'utf-8'],
    ['text/plain; CHARSET = latin1 ; x=y', 'latin1'],
    ['text/plain; charset=' + 'a'.repeat(41), 'other'],
    ['text/plain; charset=-bad', 'other']
  ]
  for (const [contentType, expected] of table) t.equal(charsetOf(contentType), expected, String(contentType))
})

t.test('templateName: django\'s str(response.template_name)', async (t) => {
  const table: Array<[unknown, string]> = [
    ['claims.ejs', 'claims.ejs'],
    ['pages/@scope/a-b+c:d.html', 'pages/@scope/a-b+c:d.html'],
    [{ raw: '<p/>' }, 'None'],
    [undefined, 'None'],
    ['', 'other'],
    ['a b.ejs', 'other'],
    ['x'.repeat(201), 'other']
  ]
  for (const [page, expected] of table) t.equal(templateName(page), expected, JSON.stringify(page))
})

class AnonymousBase extends Error {}
const Anonymous = (() => class extends AnonymousBase {})()
Object.defineProperty(Anonymous, 'name', { value: 'not an identifier' })

t.test('exceptionType: django\'s type(exception).__name__', async (t) => {
  const table: Array<[unknown, string]> = [
    [new TypeError('t'), 'TypeError'],
    [new Error('e'), 'Error'],
    ['boom', 'String'],
    [42, 'Number'],
    [null, 'null'],
    [undefined, 'undefined'],
    [Object.create(null), 'Object'],
    [new Anonymous(), 'AnonymousBase']
  ]
  for (const [error, expected] of table) t.equal(exceptionType(error), expected, expected)
})

t.test('method labels: cleaned for the counters, raw for the latency histogram, semconv\'s _OTHER', async (t) => {
  const table: Array<[string, string, string, string]> = [
    // raw, cleanMethod, latencyMethod, semconvMethod
    ['GET', 'GET', 'GET', 'GET'],
    ['PATCH', 'PATCH', 'PATCH', 'PATCH'],
    ['QUERY', '<invalid method>', 'QUERY', 'QUERY'],
    ['PROPFIND', '<invalid method>', 'PROPFIND', '_OTHER'],
    ['get', '<invalid method>', '<invalid method>', '_OTHER'],
    ['BREW', '<invalid method>', '<invalid method>', '_OTHER']
  ]
  for (const [raw, clean, latency, semconv] of table) {
    t.equal(cleanMethod(raw), clean, `${raw} counters`)
    t.equal(latencyMethod(raw), latency, `${raw} latency`)
    t.equal(semconvMethod(raw), semconv, `${raw} semconv`)
  }
})
