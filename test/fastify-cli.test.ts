import t from 'tap'
import { generatedApp } from './fixtures/fastify-cli'

// npm installs and builds: more room than the suite's 120 s when the machine is loaded (about a minute idle).
t.setTimeout(300_000)

// An app from `fastify generate` with plugins/metrics.js as docs/apps.md shows: `npm test` and `npm start` (fastify-cli from npm).
t.test('fastify-cli JavaScript app: npm test passes, npm start measures every route of routes/', async (t) => {
  await generatedApp(t, 'js')
})
