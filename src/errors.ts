/**
 * Every error kvtier raises on purpose, with a stable `code`.
 *
 * Tiers and the manager throw these; only src/protocol turns them into Error
 * frames, whose `code` field is the same string. Codes are part of the wire
 * contract: never rename one, add new ones at the end.
 */

export type ErrorCode =
  | 'KVT_BAD_FRAME'
  | 'KVT_FRAME_TOO_LARGE'
  | 'KVT_UNKNOWN_MESSAGE'
  | 'KVT_BAD_REQUEST'
  | 'KVT_NOT_HELLO'
  | 'KVT_PROTOCOL_VERSION'
  | 'KVT_NAMESPACE_MISMATCH'
  | 'KVT_NOT_FOUND'
  | 'KVT_LEASE_NOT_FOUND'
  | 'KVT_BAD_BLOCK_ID'
  | 'KVT_BAD_LAYOUT'
  | 'KVT_NOT_REGISTERED'
  | 'KVT_REGION_UNAVAILABLE'
  | 'KVT_POOL_EXHAUSTED'
  | 'KVT_CONFIG'
  | 'KVT_SOCKET_IN_USE'
  | 'KVT_TIMEOUT'
  | 'KVT_CONNECTION_CLOSED'
  | 'KVT_VALKEY_UNAVAILABLE'
  | 'KVT_VALKEY_AUTH'
  | 'KVT_CORRUPT_VALUE'
  | 'KVT_NATIVE'
  | 'KVT_INTERNAL'
  | 'KVT_VALKEY_REFUSED'
  | 'KVT_FORBIDDEN'
  | 'KVT_DISK_IO'
  | 'KVT_DISK_LOCKED';

export class KvtierError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The peer sent bytes that are not a valid frame; the connection is closed. */
export class BadFrameError extends KvtierError {
  constructor(message: string) {
    super('KVT_BAD_FRAME', message);
  }
}

export class FrameTooLargeError extends KvtierError {
  constructor(length: number, max: number) {
    super('KVT_FRAME_TOO_LARGE', `frame of ${length} bytes exceeds max_frame_bytes ${max}`);
  }
}

export class UnknownMessageError extends KvtierError {
  constructor(message: string) {
    super('KVT_UNKNOWN_MESSAGE', message);
  }
}

/** A well-formed request with a bad argument; answered with an Error frame. */
export class BadRequestError extends KvtierError {
  constructor(message: string) {
    super('KVT_BAD_REQUEST', message);
  }
}

export class NotHelloError extends KvtierError {
  constructor() {
    super('KVT_NOT_HELLO', 'the first request on a connection must be Hello');
  }
}

export class ProtocolVersionError extends KvtierError {
  constructor(got: number, supported: number) {
    super('KVT_PROTOCOL_VERSION', `protocol version ${got} is not supported (daemon speaks ${supported})`);
  }
}

export class NamespaceMismatchError extends KvtierError {
  constructor(message: string) {
    super('KVT_NAMESPACE_MISMATCH', message);
  }
}

export class NotFoundError extends KvtierError {
  constructor(what: string) {
    super('KVT_NOT_FOUND', `${what} not found`);
  }
}

export class LeaseNotFoundError extends KvtierError {
  constructor(leaseId: number) {
    super('KVT_LEASE_NOT_FOUND', `lease ${leaseId} does not exist, has expired or belongs to another connection`);
  }
}

export class BadBlockIdError extends KvtierError {
  constructor(message: string) {
    super('KVT_BAD_BLOCK_ID', message);
  }
}

export class BadLayoutError extends KvtierError {
  constructor(message: string) {
    super('KVT_BAD_LAYOUT', message);
  }
}

export class NotRegisteredError extends KvtierError {
  constructor() {
    super('KVT_NOT_REGISTERED', 'block ids need RegisterKv first on this connection');
  }
}

export class RegionUnavailableError extends KvtierError {
  constructor(message: string) {
    super('KVT_REGION_UNAVAILABLE', message);
  }
}

export class PoolExhaustedError extends KvtierError {
  constructor(bytes: number) {
    super('KVT_POOL_EXHAUSTED', `no room for ${bytes} bytes: the host pool is full of pinned chunks`);
  }
}

/** A bad configuration value: the daemon refuses to start (exit code 2). */
export class ConfigError extends KvtierError {
  constructor(message: string) {
    super('KVT_CONFIG', message);
  }
}

export class SocketInUseError extends KvtierError {
  constructor(path: string) {
    super('KVT_SOCKET_IN_USE', `another kvtier daemon is serving ${path}; stop it or pick another --socket`);
  }
}

export class TimeoutError extends KvtierError {
  constructor(what: string, ms: number) {
    super('KVT_TIMEOUT', `${what} timed out after ${ms} ms`);
  }
}

export class ConnectionClosedError extends KvtierError {
  constructor(message = 'connection closed') {
    super('KVT_CONNECTION_CLOSED', message);
  }
}

export class ValkeyUnavailableError extends KvtierError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('KVT_VALKEY_UNAVAILABLE', message, options);
  }
}

export class ValkeyAuthError extends KvtierError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('KVT_VALKEY_AUTH', message, options);
  }
}

/** A stored value failed verification (checksum, length, namespace). */
export class CorruptValueError extends KvtierError {
  constructor(message: string) {
    super('KVT_CORRUPT_VALUE', message);
  }
}

export class NativeError extends KvtierError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('KVT_NATIVE', message, options);
  }
}

/**
 * The client named something it may not have the daemon open: a file it
 * does not own, a symlink, a non-regular file, a path outside the shm dir
 * (docs/architecture.md, threat model).
 */
export class ForbiddenError extends KvtierError {
  constructor(message: string) {
    super('KVT_FORBIDDEN', message);
  }
}

/** A disk tier file operation failed; `errno` is its name (ENOSPC, EIO...). */
export class DiskIoError extends KvtierError {
  readonly errno: string;

  constructor(message: string, errno: string) {
    super('KVT_DISK_IO', message);
    this.errno = errno;
  }
}

/** Another process holds the local_disk directory's lock file: the daemon refuses to start (exit code 2). */
export class DiskLockedError extends KvtierError {
  constructor(message: string) {
    super('KVT_DISK_LOCKED', message);
  }
}

export function isKvtierError(e: unknown): e is KvtierError {
  return e instanceof KvtierError;
}

/** The message of anything thrown, for logs. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
