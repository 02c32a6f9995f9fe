import t from 'tap'
import { next, snapshotState, type JobTimes } from '../lib/worker/celery-states'
import { compareIds, jobRow, schedulerOf, streamEvent, isMarker, workerConnections, markStalledRequeues, type JobEvent } from '../lib/worker/bullmq-layout'
import { continuity, streamInfo } from '../lib/worker/stream-follower'
import { nameLabel, TaskNames, OTHER_NAME } from '../lib/worker/task-names'
import { safeError } from '../lib/worker/safe-error'
import { Store } from '../lib/store'
import { CELERY, CELERY_BUCKETS } from '../lib/names'

const fresh: JobTimes = { state: undefined, since: NaN, startedAt: NaN }
const at = (state: JobTimes['state'], since = NaN, startedAt = NaN): JobTimes => ({ state, since, startedAt })

t.test('the Celery state machine, event by event (BullMQ event at t=10 000 ms)', async (t) => {
  const T = 10_000
  // [job before, event, expected outcome]
  const table: Array<[string, JobTimes, Parameters<typeof next>[1], unknown]> = [
    ['added changes nothing', fresh, { type: 'added' }, { kind: 'unchanged' }],
    ['waiting after added: PENDING since now', fresh, { type: 'waiting' }, { kind: 'current', job: at('PENDING', T), retried: false }],
    ['a stall\'s requeue: RETRY, not a retried attempt', at('STARTED', 1, 2), { type: 'waiting', prev: 'stalled' }, { kind: 'current', job: at('RETRY', 1, 2), retried: false }],
    ['stalled itself changes nothing', at('RETRY', 1, 2), { type: 'stalled' }, { kind: 'unchanged' }],
    ['waiting from active: RETRY (5.58.6 and later)', at('STARTED', 1, 2), { type: 'waiting', prev: 'active' }, { kind: 'current', job: at('RETRY', 1, 2), retried: true }],
    ['waiting from failed: RETRY (retryJob before 5.58.6, BullMQ 4)', at('STARTED', 1, 2), { type: 'waiting', prev: 'failed' }, { kind: 'current', job: at('RETRY', 1, 2), retried: true }],
    ['a retry promoted from delayed stays RETRY', at('RETRY', 1), { type: 'waiting', prev: 'delayed' }, { kind: 'unchanged' }],
    ['a delayed job due: PENDING, since kept', at('RECEIVED', 5000), { type: 'waiting', prev: 'delayed' }, { kind: 'current', job: at('PENDING', 5000), retried: false }],
    ['due, since unknown: since now', at('RECEIVED'), { type: 'waiting', prev: 'delayed' }, { kind: 'current', job: at('PENDING', T), retried: false }],
    ['delayed at its first attempt: RECEIVED until due', fresh, { type: 'delayed', delay: 70_000 }, { kind: 'current', job: at('RECEIVED', 70_000), retried: false }],
    ['delayed after an attempt (backoff): RETRY', at('STARTED', 1, 2), { type: 'delayed', delay: 70_000 }, { kind: 'current', job: at('RETRY', 1, 2), retried: true }],
    ['waiting-children: PENDING, no latency', fresh, { type: 'waiting-children' }, { kind: 'current', job: at('PENDING'), retried: false }],
    ['first start: latency observed', at('PENDING', 8000), { type: 'active' }, { kind: 'current', job: at('STARTED', 8000, T), latency: 2, retried: false }],
    ['start of a retry: no latency', at('RETRY', 8000), { type: 'active' }, { kind: 'current', job: at('STARTED', 8000, T), retried: false }],
    ['start of a job seen nowhere before: no latency', fresh, { type: 'active' }, { kind: 'current', job: at('STARTED', NaN, T), retried: false }],
    ['clock skew never gives a negative latency', at('PENDING', 12_000), { type: 'active' }, { kind: 'current', job: at('STARTED', 12_000, T), latency: 0, retried: false }],
    ['completed: SUCCESS with its runtime', at('STARTED', 1, 7500), { type: 'completed' }, { kind: 'finished', state: 'SUCCESS', runtime: 2.5 }],
    ['completed, start unseen: no runtime', fresh, { type: 'completed' }, { kind: 'finished', state: 'SUCCESS' }],
    ['failed: FAILURE', at('STARTED', 1, 2), { type: 'failed' }, { kind: 'finished', state: 'FAILURE' }],
    ['removed while waiting: REVOKED', at('PENDING', 1), { type: 'removed', prev: 'waiting' }, { kind: 'finished', state: 'REVOKED' }],
    ['removed while delayed: REVOKED', at('RECEIVED', 1), { type: 'removed', prev: 'delayed' }, { kind: 'finished', state: 'REVOKED' }],
    ['removed after completion: forgotten', fresh, { type: 'removed', prev: 'completed' }, { kind: 'forgotten' }]
  ]
  for (const [what, job, event, expected] of table) {
    const before = { ...job }
    t.same(next(job, event, T), expected, what)
    t.same(job, before, `${what}: the job given is not changed`)
  }
})

t.test('states of jobs found by a snapshot', async (t) => {
  const row = { timestamp: 1000, delay: 500, processedOn: 3000, attempts: 0 }
  t.same(snapshotState('waiting', row), at('PENDING', 1000))
  t.same(snapshotState('waiting', { ...row, attempts: 1 }), at('RETRY', 1000))
  t.same(snapshotState('delayed', row), at('RECEIVED', 1500))
  t.same(snapshotState('delayed', { ...row, attempts: 2 }), at('RETRY', 1500))
  t.same(snapshotState('children', row), at('PENDING'))
  t.same(snapshotState('active', row), at('STARTED', NaN, 3000))
})

t.test('BullMQ layout: stream entries, job rows of 4.x and 5.x, scheduler ids, markers, worker names', async (t) => {
  t.same(streamEvent(['event', 'added', 'jobId', '7', 'name', 'send']), { kind: 'job', event: { type: 'added', jobId: '7', name: 'send', prev: undefined, delay: undefined, failedReason: undefined } })
  t.same(streamEvent(['event', 'delayed', 'jobId', '7', 'delay', '1700000000000']).kind, 'job')
  t.equal((streamEvent(['event', 'delayed', 'jobId', '7', 'delay', '1700000000000']) as { event: { delay: number } }).event.delay, 1_700_000_000_000)
  t.same(streamEvent(['event', 'cleaned', 'count', '3']), { kind: 'cleaned' })
  t.same(streamEvent(['event', 'progress', 'jobId', '7', 'data', '1']), { kind: 'other' })
  t.same(streamEvent(['event', 'drained']), { kind: 'other' })
  t.same(jobRow(['n', '100', '0', null, '2', null, 'w1']), { name: 'n', timestamp: 100, delay: 0, processedOn: NaN, attempts: 2, worker: 'w1' }, '5.x: atm')
  t.same(jobRow(['n', '100', '0', null, null, '1', null]), { name: 'n', timestamp: 100, delay: 0, processedOn: NaN, attempts: 1, worker: undefined }, '4.x: attemptsMade')
  t.equal(jobRow([null, null, null, null, null, null, null]), undefined, 'a job hash gone')
  t.equal(schedulerOf('repeat:abc:1700000000000'), 'repeat:abc')
  t.equal(schedulerOf('42'), undefined)
  t.ok(isMarker('0:1000'), 'BullMQ 4 delay marker')
  t.notOk(isMarker('10'))
  t.ok(compareIds('10-1', '9-5') > 0 && compareIds('10-1', '10-2') < 0 && compareIds('3-0', '3-0') === 0)
  const b64 = Buffer.from('mail').toString('base64')
  const list = [`id=1 name=bull:${b64} db=6`, `id=2 name=bull:${b64}:w:host-a db=6`, 'id=3 name= db=6', `id=4 name=other:${b64} db=6`, `id=5 name=bull:${Buffer.from('x').toString('base64')} db=6`].join('\n')
  t.same(workerConnections(list, 'bull', ['mail']), [{ queue: 'mail', hostname: undefined }, { queue: 'mail', hostname: 'host-a' }])
  const stall: JobEvent[] = [{ type: 'waiting', jobId: '1', prev: 'active' }, { type: 'stalled', jobId: '1' }, { type: 'waiting', jobId: '2', prev: 'active' }]
  markStalledRequeues(stall)
  t.same(stall.map((e) => e.prev), ['stalled', undefined, 'active'], 'a stall\'s requeue is told from a retry')
})

t.test('stream continuity: gaps measured with entries-added, streams recreated, Redis 6 without counts', async (t) => {
  const info = (first: string | undefined, last: string, length: number, added: number | undefined): ReturnType<typeof streamInfo> => ({ firstEntryId: first, lastGeneratedId: last, length, entriesAdded: added })
  const at = { lastId: '100-0', position: 50, lastIsEntry: true }
  t.same(continuity(at, info('90-0', '200-0', 40, 80)), { kind: 'ok' }, 'our entry still there')
  t.same(continuity(at, info('150-0', '200-0', 10, 80)), { kind: 'gap', lost: 20 }, 'trimmed 70 of 80; we had read 50: 20 lost')
  t.same(continuity(at, info('101-0', '200-0', 30, 80)), { kind: 'ok' }, 'our entry trimmed, but nothing after it')
  t.same(continuity(at, info('150-0', '200-0', 10, 12)), { kind: 'recreated' }, 'fewer entries ever added than our position')
  t.same(continuity(at, info('150-0', '200-0', 40, 40)), { kind: 'recreated' }, 'nothing trimmed, yet our entry is not there')
  t.same(continuity(at, info('10-0', '20-0', 3, 3)), { kind: 'recreated' }, 'the stream ends before our position')
  t.same(continuity(at, undefined), { kind: 'recreated' }, 'the stream deleted')
  t.same(continuity({ lastId: '0-0', position: 0, lastIsEntry: false }, undefined), { kind: 'ok' }, 'no stream yet')
  t.same(continuity({ lastId: '0-0', position: 0, lastIsEntry: false }, info('150-0', '200-0', 100, 6000)), { kind: 'gap', lost: 5900 }, 'a stream created and trimmed before its first read')
  t.same(continuity({ ...at, position: undefined }, info('150-0', '200-0', 10, undefined)), { kind: 'gap', lost: undefined }, 'Redis 6: a gap of unknown size')
  t.same(continuity({ lastId: '100-0', position: undefined, lastIsEntry: false }, info('150-0', '200-0', 10, 80)), { kind: 'ok' }, 'a start instant is not an entry')
  t.same(streamInfo(['length', 2, 'last-generated-id', '5-1', 'entries-added', 9, 'first-entry', ['4-0', ['a', '1']]]), info('4-0', '5-1', 2, 9))
  t.equal(streamInfo(new Error('no such key')), undefined)
})

t.test('job name labels: bounded, sanitised, 7 states together past the cap', async (t) => {
  t.equal(nameLabel('send-email'), 'send-email')
  t.equal(nameLabel('x'.repeat(1 << 20)), OTHER_NAME, 'a 1 MB name')
  t.equal(nameLabel('a b'), OTHER_NAME)
  t.equal(nameLabel(''), OTHER_NAME)
  const store = new Store('', 100)
  const byName = store.gauge(CELERY.tasksByName)
  const names = new TaskNames(byName, store.histogram(CELERY.runtime, CELERY_BUCKETS))
  const labels = new Set<string>()
  for (let i = 0; i < 1000; i++) labels.add(names.label(`job-${i}`))
  t.equal(labels.size, 14, '13 names and other: 14 × 7 = 98 series under the limit of 100')
  t.ok(labels.has(OTHER_NAME))
  t.equal(byName.cells.size, 98, 'every kept name has its 7 states')
  t.equal([...byName.series()].length, 98, 'the family never overflows into a series without state')
})

t.test('errors reach logs without the broker credentials', async (t) => {
  const err = Object.assign(new Error('ERR unknown command `AUTH`, with args beginning with: `default` `s3cr%t!`'), { command: { name: 'auth', args: ['default', 's3cr%t!'] }, code: 'X' })
  const safe = safeError(err, 'redis://default:s3cr%25t!@host:6379/0')
  t.same(safe, { type: 'Error', message: 'ERR unknown command `AUTH`, with args beginning with: `***` `***`', code: 'X' })
  t.notMatch(JSON.stringify(safe), 's3cr')
})
