/**
 * Every error kvtier raises on purpose, with a stable `code`.
 *
 * Tiers and the manager throw these; only src/protocol turns them into Error
 * frames, whose `code` field is the same string. The codes come from the one
 * table in proto/constants.json (generated into proto/constants.ts, the
 * addon's constants.h and the Python client): add a code there, then its class
 * here. native/ throws NativeCodedError (it imports nothing from src/), which
 * counts as an instance of the class of its code (KvtierError[Symbol.hasInstance]).
 */

import { NativeCodedError } from '../native/errors.js';
import { ErrorCode, isErrorCode } from '../proto/constants.js';

export { ErrorCode };

export class KvtierError extends Error {
  readonly code: ErrorCode;
  /** The code of every instance of this class (unset on KvtierError itself). */
  static readonly code: ErrorCode | undefined = undefined;

  /**
   * native/ (a leaf) throws NativeCodedError with a code from the same
   * table: such an error counts as an instance of the class of its code
   * (and of KvtierError), so `e instanceof BadLayoutError` holds for an
   * addon rejection with KVT_BAD_LAYOUT.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    if (!(value instanceof NativeCodedError)) return false;
    return this.code === undefined ? isErrorCode(value.code) : value.code === this.code;
  }

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The peer sent a frame that is not a valid envelope (answered, the connection lives on). */
export class BadFrameError extends KvtierError {
  static override readonly code = ErrorCode.KVT_BAD_FRAME;

  constructor(message: string) {
    super(ErrorCode.KVT_BAD_FRAME, message);
  }
}

export class FrameTooLargeError extends KvtierError {
  static override readonly code = ErrorCode.KVT_FRAME_TOO_LARGE;

  constructor(length: number, max: number) {
    super(ErrorCode.KVT_FRAME_TOO_LARGE, `frame of ${length} bytes exceeds max_frame_bytes ${max}`);
  }
}

export class UnknownMessageError extends KvtierError {
  static override readonly code = ErrorCode.KVT_UNKNOWN_MESSAGE;

  constructor(message: string) {
    super(ErrorCode.KVT_UNKNOWN_MESSAGE, message);
  }
}

/** A well-formed request with a bad argument; answered with an Error frame. */
export class BadRequestError extends KvtierError {
  static override readonly code = ErrorCode.KVT_BAD_REQUEST;

  constructor(message: string) {
    super(ErrorCode.KVT_BAD_REQUEST, message);
  }
}

export class NotHelloError extends KvtierError {
  static override readonly code = ErrorCode.KVT_NOT_HELLO;

  constructor() {
    super(ErrorCode.KVT_NOT_HELLO, 'the first request on a connection must be Hello');
  }
}

export class ProtocolVersionError extends KvtierError {
  static override readonly code = ErrorCode.KVT_PROTOCOL_VERSION;

  constructor(got: number, supported: number) {
    super(ErrorCode.KVT_PROTOCOL_VERSION, `protocol version ${got} is not supported (daemon speaks ${supported})`);
  }
}

export class NamespaceMismatchError extends KvtierError {
  static override readonly code = ErrorCode.KVT_NAMESPACE_MISMATCH;

  constructor(message: string) {
    super(ErrorCode.KVT_NAMESPACE_MISMATCH, message);
  }
}

export class NotFoundError extends KvtierError {
  static override readonly code = ErrorCode.KVT_NOT_FOUND;

  constructor(what: string) {
    super(ErrorCode.KVT_NOT_FOUND, `${what} not found`);
  }
}

export class LeaseNotFoundError extends KvtierError {
  static override readonly code = ErrorCode.KVT_LEASE_NOT_FOUND;

  constructor(leaseId: number) {
    super(ErrorCode.KVT_LEASE_NOT_FOUND, `lease ${leaseId} does not exist, has expired or belongs to another connection`);
  }
}

export class BadBlockIdError extends KvtierError {
  static override readonly code = ErrorCode.KVT_BAD_BLOCK_ID;

  constructor(message: string) {
    super(ErrorCode.KVT_BAD_BLOCK_ID, message);
  }
}

export class BadLayoutError extends KvtierError {
  static override readonly code = ErrorCode.KVT_BAD_LAYOUT;

  constructor(message: string) {
    super(ErrorCode.KVT_BAD_LAYOUT, message);
  }
}

export class NotRegisteredError extends KvtierError {
  static override readonly code = ErrorCode.KVT_NOT_REGISTERED;

  constructor() {
    super(ErrorCode.KVT_NOT_REGISTERED, 'block ids need RegisterKv first on this connection');
  }
}

export class RegionUnavailableError extends KvtierError {
  static override readonly code = ErrorCode.KVT_REGION_UNAVAILABLE;

  constructor(message: string) {
    super(ErrorCode.KVT_REGION_UNAVAILABLE, message);
  }
}

/** A bad configuration value: the daemon refuses to start (exit code 2). */
export class ConfigError extends KvtierError {
  static override readonly code = ErrorCode.KVT_CONFIG;

  constructor(message: string) {
    super(ErrorCode.KVT_CONFIG, message);
  }
}

/** A bad command-line flag or argument: the CLI prints it and exits 2. */
export class UsageError extends KvtierError {
  static override readonly code = ErrorCode.KVT_USAGE;

  constructor(message: string) {
    super(ErrorCode.KVT_USAGE, message);
  }
}

export class SocketInUseError extends KvtierError {
  static override readonly code = ErrorCode.KVT_SOCKET_IN_USE;

  constructor(path: string) {
    super(ErrorCode.KVT_SOCKET_IN_USE, `another kvtier daemon is serving ${path}; stop it or pick another --socket`);
  }
}

export class TimeoutError extends KvtierError {
  static override readonly code = ErrorCode.KVT_TIMEOUT;

  constructor(what: string, ms: number) {
    super(ErrorCode.KVT_TIMEOUT, `${what} timed out after ${ms} ms`);
  }
}

export class ConnectionClosedError extends KvtierError {
  static override readonly code = ErrorCode.KVT_CONNECTION_CLOSED;

  constructor(message = 'connection closed') {
    super(ErrorCode.KVT_CONNECTION_CLOSED, message);
  }
}

export class ValkeyUnavailableError extends KvtierError {
  static override readonly code = ErrorCode.KVT_VALKEY_UNAVAILABLE;

  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.KVT_VALKEY_UNAVAILABLE, message, options);
  }
}

export class ValkeyAuthError extends KvtierError {
  static override readonly code = ErrorCode.KVT_VALKEY_AUTH;

  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.KVT_VALKEY_AUTH, message, options);
  }
}

/** A stored value failed verification (checksum, length, namespace). */
export class CorruptValueError extends KvtierError {
  static override readonly code = ErrorCode.KVT_CORRUPT_VALUE;

  constructor(message: string) {
    super(ErrorCode.KVT_CORRUPT_VALUE, message);
  }
}

export class NativeError extends KvtierError {
  static override readonly code = ErrorCode.KVT_NATIVE;

  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.KVT_NATIVE, message, options);
  }
}

/**
 * The client named something it may not have the daemon open: a file it
 * does not own, a symlink, a non-regular file, a path outside the shm dir
 * (docs/architecture.md, threat model).
 */
export class ForbiddenError extends KvtierError {
  static override readonly code = ErrorCode.KVT_FORBIDDEN;

  constructor(message: string) {
    super(ErrorCode.KVT_FORBIDDEN, message);
  }
}

/** A disk tier file operation failed; `errno` is its name (ENOSPC, EIO...), from the message the addon wrote. */
export class DiskIoError extends KvtierError {
  static override readonly code = ErrorCode.KVT_DISK_IO;

  constructor(message: string) {
    super(ErrorCode.KVT_DISK_IO, message);
  }
}

/** Another process holds the local_disk directory's lock file: the daemon refuses to start (exit code 2). */
export class DiskLockedError extends KvtierError {
  static override readonly code = ErrorCode.KVT_DISK_LOCKED;

  constructor(message: string) {
    super(ErrorCode.KVT_DISK_LOCKED, message);
  }
}

/** The errno name a DiskIoError's message starts with ("ENOSPC: write ..."), or ''. */
export function diskErrno(e: unknown): string {
  return e instanceof DiskIoError ? (/^(E[A-Z0-9]+):/.exec(e.message)?.[1] ?? 'EIO') : '';
}

export function isKvtierError(e: unknown): e is KvtierError {
  return e instanceof KvtierError;
}

/** The message of anything thrown, for logs. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
