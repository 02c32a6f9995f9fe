import { MissingPeerError } from './errors'

/**
 * Loads what needs an optional peer dependency: only the feature that uses one loads it, so an
 * app without the feature neither installs nor loads it. `pkg` missing (not a file or dependency
 * of it) becomes one clear error naming the feature and what to install.
 */
export function requirePeer<T> (load: () => T, feature: string, pkg: string, install: string = pkg): T {
  try {
    return load()
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code === 'MODULE_NOT_FOUND' && e.message.startsWith(`Cannot find module '${pkg}'`)) throw new MissingPeerError(feature, pkg, install)
    throw err
  }
}
