import t from 'tap'
import { generatedApp } from './fixtures/fastify-cli'

// npm installs and builds: more room than the suite's 120 s when the machine is loaded (about a minute idle).
t.setTimeout(300_000)

// The same with `fastify generate --lang=ts` and src/plugins/metrics.ts.
t.test('fastify-cli TypeScript app: npm test passes, npm start measures every route of routes/', async (t) => {
  await generatedApp(t, 'ts')
})
