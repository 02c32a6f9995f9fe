// The one log rate limiter, and the loggers built on it, against a fake clock.
import t from 'tap'
import type { FastifyBaseLogger } from 'fastify'
import { Faults, Warnings } from '../lib/faults'
import { LogLimiter } from '../lib/log-limit'

function fakeClock (): { now: () => number, advance: (ms: number) => void } {
  let at = 1_000_000
  return { now: () => at, advance: (ms) => { at += ms } }
}

function recordingLogger (): { log: FastifyBaseLogger, lines: Array<{ level: string, obj: Record<string, unknown>, msg: string }> } {
  const lines: Array<{ level: string, obj: Record<string, unknown>, msg: string }> = []
  const at = (level: string) => (obj: Record<string, unknown>, msg: string) => { lines.push({ level, obj, msg }) }
  return { lines, log: { error: at('error'), warn: at('warn'), info: at('info') } as unknown as FastifyBaseLogger }
}

t.test('one line per key per interval, with the count held back', async (t) => {
  const clock = fakeClock()
  const limiter = new LogLimiter(10_000, clock.now)
  t.equal(limiter.admit('a'), 0)
  t.equal(limiter.admit('a'), false)
  t.equal(limiter.admit('b'), 0, 'keys are independent')
  clock.advance(9_999)
  t.equal(limiter.admit('a'), false)
  clock.advance(1)
  t.equal(limiter.admit('a'), 2, 'the two held back are reported with the next line')
  t.equal(limiter.admit('a'), false)
})

t.test('keys beyond the bound share one slot', async (t) => {
  const clock = fakeClock()
  const limiter = new LogLimiter(1000, clock.now, 2)
  t.equal(limiter.admit('a'), 0)
  t.equal(limiter.admit('b'), 0)
  t.equal(limiter.admit('c'), 0, 'the first key past the bound takes the shared slot')
  t.equal(limiter.admit('d'), false, 'the next one shares it')
})

t.test('several lines per interval when asked, the rest held back and reported with the next', async (t) => {
  const clock = fakeClock()
  const limiter = new LogLimiter(1000, clock.now, 10, 2)
  t.same([limiter.admit(), limiter.admit(), limiter.admit(), limiter.admit()], [0, 0, false, false])
  clock.advance(999)
  t.equal(limiter.admit(), false, 'the window starts at its first line')
  clock.advance(1)
  t.same([limiter.admit(), limiter.admit(), limiter.admit()], [3, 0, false])
})

t.test('Faults: every failure counted, logged once per interval', async (t) => {
  const clock = fakeClock()
  const { log, lines } = recordingLogger()
  const faults = new Faults(log, 60_000, 'it failed', clock.now)
  for (let i = 0; i < 5; i++) faults.report(new Error(String(i)))
  t.equal(faults.count, 5)
  t.equal(lines.length, 1)
  clock.advance(60_000)
  faults.report(new Error('again'))
  t.equal(lines.length, 2)
  t.equal(lines[1]!.obj.failures, 6)
})

t.test('Warnings: each message once, at most N per interval, the rest counted', async (t) => {
  const clock = fakeClock()
  const { log, lines } = recordingLogger()
  const warnings = new Warnings(log, 2, 60_000, 1000, clock.now)
  warnings.once('x')
  warnings.once('x')
  warnings.once('y')
  warnings.once('z')
  t.same(lines.map((l) => l.msg), ['upstream-metrics: x', 'upstream-metrics: y'])
  clock.advance(60_000)
  warnings.once('w')
  t.equal(lines.length, 3)
  t.same(lines[2]!.obj, { suppressed: 1 })
})
