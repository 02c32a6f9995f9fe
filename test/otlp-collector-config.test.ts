// The Collector and Prometheus configuration that docs/scaling.md shows for OTLP push, checked for consistency
// (every pipeline component is defined and used, ports line up) and, for Prometheus, by promtool itself.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import t from 'tap'
import { parse } from 'yaml'

const doc = readFileSync(resolve(__dirname, '..', 'docs', 'scaling.md'), 'utf8')
const section = doc.slice(doc.indexOf('## Pushing over OTLP'))
const blocks = [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => parse(m[1]!) as Record<string, any>)
const collector = blocks.find((b) => 'receivers' in b)!
const scrape = blocks.find((b) => 'scrape_configs' in b)!

const type = (id: string): string => id.split('/')[0]!

t.test('the docs show a Collector config and a Prometheus scrape config for it', async (t) => {
  t.ok(collector, 'a Collector config')
  t.ok(scrape, 'a Prometheus scrape config')
})

t.test('Collector config: OTLP/HTTP in, prometheus and prometheusremotewrite out, every component defined and used', async (t) => {
  t.match(collector.receivers.otlp.protocols.http.endpoint, /:4318$/, 'OTLP/HTTP on its standard port')
  const pipelines = Object.entries(collector.service.pipelines as Record<string, { receivers: string[], processors?: string[], exporters: string[] }>)
  t.ok(pipelines.length > 0)
  const used = { receivers: new Set<string>(), processors: new Set<string>(), exporters: new Set<string>() }
  for (const [name, pipeline] of pipelines) {
    t.equal(type(name), 'metrics', `${name} is a metrics pipeline`)
    for (const kind of ['receivers', 'processors', 'exporters'] as const) {
      for (const id of pipeline[kind] ?? []) {
        t.ok(id in (collector[kind] ?? {}), `${name}: ${kind.slice(0, -1)} ${id} is defined`)
        used[kind].add(id)
      }
    }
  }
  for (const kind of ['receivers', 'processors', 'exporters'] as const) {
    t.same(Object.keys(collector[kind] ?? {}).sort(), [...used[kind]].sort(), `every ${kind.slice(0, -1)} defined is used`)
  }
  t.same([...used.exporters].map(type).sort(), ['prometheus', 'prometheusremotewrite'])
  for (const id of used.exporters) t.not(collector.exporters[id].add_metric_suffixes, false, `${id} keeps the default suffix rules`)
  t.match(collector.exporters.prometheusremotewrite.endpoint, /^https?:\/\/[^/]+\/api\/v1\/write$/)
})

t.test('Prometheus scrapes the Collector exporter, keeping the pushed job and instance; promtool accepts it', async (t) => {
  const [job] = scrape.scrape_configs as Array<{ honor_labels: boolean, static_configs: Array<{ targets: string[] }> }>
  t.equal(job!.honor_labels, true)
  const port = String(collector.exporters.prometheus.endpoint).split(':').pop()
  t.ok(job!.static_configs.flatMap((s) => s.targets).some((target) => target.endsWith(`:${port}`)), 'the target is the exporter port')
  const dir = mkdtempSync(join(tmpdir(), 'otlp-prom-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'prometheus.yml')
  writeFileSync(file, section.match(/```yaml\n(scrape_configs:[\s\S]*?)```/)![1]!)
  const out = execFileSync('promtool', ['check', 'config', file], { encoding: 'utf8', timeout: 30_000 })
  t.match(out, /SUCCESS/)
})
