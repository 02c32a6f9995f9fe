import { execFile } from 'node:child_process'
import { killOnExit } from './children'

/** Debian's interpreter: the one with python3-psycopg2 (a pyenv `python3` on PATH usually has none). */
export const PYTHON = '/usr/bin/python3'

/**
 * Runs `/usr/bin/python3 args…` with `input` on stdin and resolves with its stdout. A missing interpreter or a failing
 * script (psycopg2 not importable…) rejects with a message that says what to install: these
 * tests compare with the real psycopg2 and must fail, never skip, without it.
 */
export async function python (args: string[], input = '', timeout = 60_000): Promise<string> {
  return await new Promise((resolve, reject) => {
    const child = killOnExit(execFile(PYTHON, args, { timeout, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err === null) return resolve(stdout)
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT'
      reject(new Error(missing
        ? `${PYTHON} not found: install Debian's python3 and python3-psycopg2 (apt-get install python3-psycopg2)`
        : `${PYTHON} ${args[0]} failed (${err.message.split('\n')[0]}): ${stderr.trim()}\nInstall Debian's python3-psycopg2 if psycopg2 is missing.`))
    }))
    child.stdin?.on('error', () => {}) // the interpreter is missing or exited early: the callback says why
    child.stdin?.end(input)
  })
}
