// lib/patch.ts against the real instrumentations it patches (pg, ioredis, node-redis): the version
// ranges each one claims, decided as OpenTelemetry decides them (semver), pinned to the copies installed here.
import { readFileSync } from 'node:fs'
import t from 'tap'
import type { InstrumentationModuleDefinition } from '@opentelemetry/instrumentation'
import semver from 'semver'
import { NODE_REDIS_PATCH } from '../lib/cache/node-redis'
import { IOREDIS_PATCH } from '../lib/cache/redis'
import { PG_PATCH } from '../lib/db/pg'
import { acquirePatch, satisfies, type PatchLogger, type PatchSpec } from '../lib/patch'

/** The installed copy of each package the instrumentations patch (the tests run against these). */
const INSTALLED: Record<string, string[]> = {
  pg: ['pg'],
  'pg-pool': ['pg-pool'],
  ioredis: ['ioredis', 'ioredis-6'],
  '@redis/client': ['@redis/client']
}

function installedVersion (dir: string): string {
  return (JSON.parse(readFileSync(`node_modules/${dir}/package.json`, 'utf8')) as { version: string }).version
}

function definitionsOf (spec: PatchSpec): InstrumentationModuleDefinition[] {
  const instrumentation = spec.create()
  return (instrumentation as unknown as { _modules: InstrumentationModuleDefinition[] })._modules
}

t.test('ranges follow semver, as OpenTelemetry checks them', async (t) => {
  t.equal(satisfies('5.0.0-rc.2', ['>=2.0.0 <7']), false, 'a prerelease is not in a range of releases')
  t.equal(satisfies('5.0.0-rc.2', ['>=2.0.0 <7'], true), true, 'unless the definition includes prereleases')
  t.equal(satisfies('5.0.0-rc.2', ['*']), false, 'not even in *')
  t.equal(satisfies(undefined, ['*']), true, 'an unknown version only in *')
  t.equal(satisfies(undefined, ['>=2.0.0 <7']), false)
  t.equal(satisfies('6.3.1', ['^1.0.0', '^5.0.0', '^6.0.0']), true, 'any of the ranges')
  t.equal(satisfies('7.0.0', ['>=2.0.0 <7']), false)
  t.equal(satisfies('not a version', ['*']), false)
})

for (const spec of [PG_PATCH, IOREDIS_PATCH, NODE_REDIS_PATCH] as PatchSpec[]) {
  for (const definition of definitionsOf(spec)) {
    const targets = [{ name: definition.name, ranges: definition.supportedVersions }, ...(definition.files ?? []).map((f) => ({ name: f.name, ranges: f.supportedVersions }))]
    for (const { name, ranges } of targets) {
      for (const range of ranges) {
        t.test(`${spec.key}: ${name} ${range}`, async (t) => {
          const lowest = semver.minVersion(range)!.version
          t.ok(satisfies(lowest, [range]), `its lowest version ${lowest}`)
          t.notOk(satisfies(`${lowest}-rc.1`, [range]), 'not the prerelease before it')
          const inside = semver.inc(lowest, 'minor')!
          if (semver.satisfies(inside, range)) t.notOk(satisfies(`${inside}-rc.2`, [range]), `nor a prerelease inside it (${inside}-rc.2)`)
          for (const comparator of new semver.Range(range).set.flat()) {
            if (comparator.operator === '<') t.notOk(satisfies(comparator.semver.version, [range]), `not its upper bound ${comparator.semver.version}`)
          }
          for (const dir of INSTALLED[definition.name] ?? []) {
            const version = installedVersion(dir)
            // A file's narrower range may leave an installed copy out; the package's own range may not.
            if (name === definition.name || semver.satisfies(version, range)) t.ok(satisfies(version, ranges), `the installed ${dir}@${version}`)
          }
        })
      }
    }
  }
}

t.test('a prerelease offered by a load hook is reported, not patched', async (t) => {
  const warnings: string[] = []
  const lease = acquirePatch(PG_PATCH, { level: 'warn', warn: (_obj: object, msg: string) => { warnings.push(msg) } } as PatchLogger)
  t.teardown(() => lease.release())
  const pg = (lease.instrumentation as unknown as { _modules: InstrumentationModuleDefinition[] })._modules.find((d) => d.name === 'pg')!
  t.same(pg.supportedVersions, ['*'], 'the hooks offer every version…')
  t.equal(pg.includePrerelease, true, '…prereleases included')
  const exports = { Client: class {} }
  t.equal(pg.patch!(exports, '8.5.0-rc.1'), exports, 'handed back as it is')
  t.match(warnings, [/pg@8\.5\.0-rc\.1 .*version 8\.5\.0-rc\.1 is outside the supported >=8\.0\.3 <9/])
})
