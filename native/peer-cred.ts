/**
 * SO_PEERCRED of a connected Unix socket, read by the addon: who connected,
 * as the kernel recorded it at connect().
 */
import { badRequest, coded } from './errors.js';
import { load, type PeerCredentials } from './loader.js';

/** SO_PEERCRED of the connected Unix socket `fd`; throws KVT_NATIVE when fd is not one. */
export function peerCredentials(fd: number): PeerCredentials {
  if (!Number.isSafeInteger(fd) || fd < 0) throw badRequest(`expected a file descriptor for peerCredentials, got ${fd}`);
  try {
    return load().peerCredentials(fd);
  } catch (e) {
    throw coded(e);
  }
}

