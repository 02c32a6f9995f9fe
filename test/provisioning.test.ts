// npm test's own set-up (scripts/test-deps.sh): when the Debian packages the tests need are missing
// and cannot be installed, it stops with one line saying what to install — never a silent skip.
// Absence is simulated with a PATH that hides the tools and a Python without Django.
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import t from 'tap'

const ROOT = resolve(__dirname, '..')
const SCRIPT = join(ROOT, 'scripts/test-deps.sh')
const PACKAGES = ['prometheus', 'docker-compose', 'python3-django', 'python3-django-prometheus', 'python3-psycopg2', 'python3-django-redis', 'gunicorn']
const HIDDEN = new Set(['promtool', 'prometheus', 'docker-compose', 'gunicorn', 'apt-get'])

/** A bin directory with every command of the system's PATH except the hidden ones. */
function pathWithout (hidden: Set<string>): { path: string, cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'um-path-'))
  chmodSync(dir, 0o755) // readable by the unprivileged user below
  for (const source of (process.env.PATH ?? '').split(':').filter((d) => d !== '')) {
    let names: string[] = []
    try { names = readdirSync(source) } catch { continue }
    for (const name of names) {
      if (hidden.has(name)) continue
      try { symlinkSync(join(source, name), join(dir, name)) } catch { /* an earlier PATH entry won */ }
    }
  }
  return { path: dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

function run (env: NodeJS.ProcessEnv, user?: string): { status: number | null, stdout: string, stderr: string } {
  const [command, args] = user === undefined ? ['bash', [SCRIPT]] : ['setpriv', [`--reuid=${user}`, '--regid=nogroup', '--clear-groups', 'bash', SCRIPT]]
  const result = spawnSync(command, args, { env, encoding: 'utf8', timeout: 60_000 })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

const oneLine = (text: string): string[] => text.split('\n').filter((line) => line !== '')

t.test('nothing to do when every package is there', async (t) => {
  const result = run({ ...process.env, UPSTREAM_PROVISION: 'never' })
  t.equal(result.status, 0, result.stderr)
  t.equal(result.stdout + result.stderr, '', 'silent')
})

t.test('everything missing and apt-get unavailable: one line naming every package, status 1', async (t) => {
  const { path, cleanup } = pathWithout(HIDDEN)
  t.teardown(cleanup)
  const result = run({ ...process.env, PATH: path, UPSTREAM_TEST_PYTHON: '/nonexistent/python3' })
  t.equal(result.status, 1)
  t.equal(result.stdout, '')
  const lines = oneLine(result.stderr)
  t.equal(lines.length, 1, `one line: ${result.stderr}`)
  t.match(lines[0], /^npm test needs Debian packages that are not installed: /)
  t.match(lines[0], `apt-get install -y --no-install-recommends ${PACKAGES.join(' ')}`, 'the command that installs them')
})

t.test('only what is missing is named', async (t) => {
  const { path, cleanup } = pathWithout(new Set(['docker-compose', 'apt-get']))
  t.teardown(cleanup)
  const result = run({ ...process.env, PATH: path })
  t.equal(result.status, 1)
  t.equal(oneLine(result.stderr).length, 1)
  t.match(result.stderr, /not installed: docker-compose; install them with: sudo apt-get install -y --no-install-recommends docker-compose /)
})

t.test('UPSTREAM_PROVISION=never does not install, even as root', async (t) => {
  const { path, cleanup } = pathWithout(new Set(['promtool', 'prometheus']))
  t.teardown(cleanup)
  const result = run({ ...process.env, PATH: path, UPSTREAM_PROVISION: 'never' })
  t.equal(result.status, 1)
  t.notMatch(result.stderr, /installing/)
  t.equal(oneLine(result.stderr).length, 1, result.stderr)
})

t.test('as a user who is not root, with apt-get on the PATH: no install attempt, one line', async (t) => {
  const { path, cleanup } = pathWithout(new Set(['promtool', 'prometheus', 'gunicorn']))
  t.teardown(cleanup)
  // Run as root (CI, this kind of machine), it drops to `nobody`; otherwise it already is such a user.
  const result = run({ PATH: path, HOME: '/nonexistent' }, process.getuid?.() === 0 ? 'nobody' : undefined)
  t.equal(result.status, 1, result.stderr)
  t.notMatch(result.stderr, /installing/)
  t.equal(oneLine(result.stderr).length, 1, result.stderr)
  t.match(result.stderr, /not installed: prometheus gunicorn;/)
})

t.test('a wrong UPSTREAM_PROVISION is an error, not a skip', async (t) => {
  const result = run({ ...process.env, UPSTREAM_PROVISION: 'sometimes' })
  t.equal(result.status, 1)
  t.match(result.stderr, /UPSTREAM_PROVISION must be auto, never or always/)
})
