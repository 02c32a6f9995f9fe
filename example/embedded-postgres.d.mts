export interface Database {
  url: string
  embedded: boolean
  poolMax: number
  stop(): Promise<void>
}
export function startEmbeddedPostgres (options?: { host?: string, port?: number }): Promise<Database>
export function databaseFromEnv (): Promise<Database>
