/**
 * Who is connected: the peer's credentials, read once at accept.
 *
 * The kernel records the connecting process's pid/uid/gid on a Unix socket
 * at connect() (SO_PEERCRED); a client cannot claim another uid. RegisterKv
 * maps only shm files owned by that uid. Node has no API for SO_PEERCRED,
 * so the daemon asks the native addon with the socket's file descriptor,
 * which Node exposes only as the undocumented `socket._handle.fd` (a libuv
 * pipe handle's fd; -1 where the platform has none). Read once at accept
 * because the handle goes away when the socket closes, and the uid cannot
 * change for the connection's lifetime.
 */
import type { Socket } from 'node:net';

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** Reads SO_PEERCRED of a socket fd (the addon's peerCredentials); throws on failure. */
export type PeerReader = (fd: number) => PeerCredentials;

/** The socket's fd, or null when Node does not expose one for it. */
export function socketFd(socket: Socket): number | null {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : null;
}
