/** What of a Redis error reaches a log line: never the error object itself. */
export interface SafeError {
  type: string
  message: string
  code?: string
}

/**
 * ioredis errors carry the command they answer (`command.args`: AUTH's are the username and
 * password) and Redis may quote a command's arguments in its reply ("unknown command …, with args
 * beginning with: …"). A log gets the error's class, code and message, with every credential of
 * the broker URL (password, username, the URL itself) replaced by `***`.
 */
export function safeError (err: unknown, broker: string): SafeError {
  const e = err as { name?: unknown, message?: unknown, code?: unknown } | null | undefined
  let message = typeof e?.message === 'string' ? e.message : String(err)
  for (const secret of credentials(broker)) message = message.split(secret).join('***')
  const out: SafeError = { type: typeof e?.name === 'string' ? e.name : 'Error', message }
  if (typeof e?.code === 'string') out.code = e.code
  return out
}

function credentials (broker: string): string[] {
  const found = [broker]
  try {
    const url = new URL(broker)
    for (const part of [url.password, url.username, url.searchParams.get('password') ?? '']) {
      if (part === '') continue
      found.push(part)
      const decoded = safeDecode(part)
      if (decoded !== part) found.push(decoded)
    }
  } catch {}
  // Longest first, so a password containing the username is replaced whole.
  return found.filter((s) => s.length > 0).sort((a, b) => b.length - a.length)
}

function safeDecode (value: string): string {
  try {
    return decodeURIComponent(value)
  } catch {
    return value
  }
}
