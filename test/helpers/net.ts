import { request } from 'node:http'
import { createServer } from 'node:net'

export interface Reply { status: number, headers: Record<string, string | string[] | undefined>, body: string }
export interface RawReply { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer }

export interface SendOptions {
  method?: string
  headers?: Record<string, string>
  body?: string | Buffer
  timeoutMs?: number
}

/** One request on a fresh connection (no keep-alive); the body comes back as bytes. */
export async function send (url: string, options: SendOptions = {}): Promise<RawReply> {
  const { method = 'GET', headers = {}, body, timeoutMs = 10_000 } = options
  const length = body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }
  return await new Promise((resolve, reject) => {
    const req = request(url, { method, agent: false, headers: { connection: 'close', ...length, ...headers } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
    })
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout: ${method} ${url}`)))
    req.on('error', reject)
    req.end(body)
  })
}

/** One GET on a fresh connection (no keep-alive), so a cluster spreads them over workers. */
export async function get (url: string, headers: Record<string, string> = {}): Promise<Reply> {
  const reply = await send(url, { headers })
  return { ...reply, body: reply.body.toString('utf8') }
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
    server.on('error', reject)
  })
}
