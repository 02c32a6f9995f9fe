import t from 'tap'
import { RecentFinishes } from '../lib/worker/recent-finishes'

t.test('keeps the finishes of the window; the lower bound allows half of it as clock skew', async (t) => {
  const r = new RecentFinishes(10_000, 1000)
  r.add('a', 1_000)
  r.add('b', 5_000)
  r.add('c', 11_500)
  t.notOk(r.has('a'), 'older than the window before the newest: forgotten')
  t.ok(r.has('b') && r.has('c'))
  t.equal(r.lowerBound(11_500), 6_500)
})

t.test('past the count bound the oldest go, and the lower bound rises above them', async (t) => {
  const r = new RecentFinishes(10_000, 3)
  for (let i = 0; i < 5; i++) r.add(`j${i}`, 100 + i)
  t.same(['j0', 'j1', 'j2', 'j3', 'j4'].map((id) => r.has(id)), [false, false, true, true, true])
  t.equal(r.lowerBound(104), 101, 'nothing at or below a forgotten finish is read as finished in a gap')
})

t.test('a job finished again keeps its later finish; many finishes stay cheap to drop', async (t) => {
  const r = new RecentFinishes(10, 100_000)
  r.add('x', 0)
  r.add('x', 8)
  r.add('y', 15)
  t.ok(r.has('x'), 'its first finish left the window, its second did not')
  for (let i = 0; i < 200_000; i++) r.add(String(i), 20 + i)
  t.ok(r.has('199999') && !r.has('0') && !r.has('x'))
})
