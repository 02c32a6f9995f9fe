import type { IncomingHttpHeaders } from 'node:http'
import { promisify } from 'node:util'
import { gzip as gzipCallback } from 'node:zlib'
import { CONTENT_TYPES, type ExpositionFormat } from './exposition'
import { acceptsGzip, negotiateFormat } from './negotiation'

const gzip = promisify(gzipCallback)
/** zlib level 1: most of the size saving of level 6 for a fraction of its CPU (bench/scrape.mjs, "gzip"). */
const GZIP_LEVEL = 1

/**
 * One collection's exposition, written at most once per format and encoded at most once per
 * format and encoding, however many scrapes share it.
 */
export class Exposition {
  private readonly texts = new Map<ExpositionFormat, string>()
  private readonly encoded = new Map<string, Buffer | Promise<Buffer>>()

  constructor (private readonly write: (format: ExpositionFormat) => string) {}

  text (format: ExpositionFormat = 'text'): string {
    let text = this.texts.get(format)
    if (text === undefined) {
      text = this.write(format)
      this.texts.set(format, text)
    }
    return text
  }

  bytes (format: ExpositionFormat): Buffer {
    let bytes = this.encoded.get(format) as Buffer | undefined
    if (bytes === undefined) {
      bytes = Buffer.from(this.text(format))
      this.encoded.set(format, bytes)
    }
    return bytes
  }

  /** Compressed on libuv's thread pool, off the event loop. */
  async gzipped (format: ExpositionFormat): Promise<Buffer> {
    const key = `${format}+gzip`
    let bytes = this.encoded.get(key)
    if (bytes === undefined) {
      bytes = gzip(this.bytes(format), { level: GZIP_LEVEL })
      this.encoded.set(key, bytes)
    }
    return await bytes
  }
}

export interface ScrapeNegotiation {
  /** Answer OpenMetrics to scrapers that prefer it (the `openMetrics` option). */
  readonly openMetrics: boolean
}

export interface ScrapeAnswer {
  readonly headers: Record<string, string>
  readonly body: Buffer
}

/** The answer to a scrape with these request headers, in the format and encoding it asked for. */
export async function scrapeAnswer (exposition: Exposition, request: IncomingHttpHeaders, negotiation: ScrapeNegotiation): Promise<ScrapeAnswer> {
  const format = negotiation.openMetrics ? negotiateFormat(request.accept) : 'text'
  const headers: Record<string, string> = {
    'content-type': CONTENT_TYPES[format],
    'cache-control': 'no-store',
    vary: negotiation.openMetrics ? 'Accept, Accept-Encoding' : 'Accept-Encoding'
  }
  if (!acceptsGzip(request['accept-encoding'])) return { headers, body: exposition.bytes(format) }
  headers['content-encoding'] = 'gzip'
  return { headers, body: await exposition.gzipped(format) }
}
