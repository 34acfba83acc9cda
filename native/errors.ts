/**
 * The one error native/ throws: a plain Error with a `code` from the shared
 * table (proto/constants.json). native/ is a leaf and imports nothing from
 * src/; src/errors.ts maps these to its typed classes (a NativeCodedError
 * counts as an instance of the class of its code), so callers see
 * BadLayoutError, RegionUnavailableError... as before.
 */
import { ErrorCode, isErrorCode } from '../proto/constants.js';

export class NativeCodedError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'NativeCodedError';
  }
}

/** The message of anything thrown. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** What the addon threw (an Error with a code string), as a NativeCodedError; unknown codes become KVT_NATIVE. */
export function coded(e: unknown): NativeCodedError {
  if (e instanceof NativeCodedError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  return new NativeCodedError(isErrorCode(code) ? code : ErrorCode.KVT_NATIVE, messageOf(e), { cause: e });
}

export const badRequest = (message: string): NativeCodedError => new NativeCodedError(ErrorCode.KVT_BAD_REQUEST, message);
export const badLayout = (message: string): NativeCodedError => new NativeCodedError(ErrorCode.KVT_BAD_LAYOUT, message);
export const badBlockId = (message: string): NativeCodedError => new NativeCodedError(ErrorCode.KVT_BAD_BLOCK_ID, message);
export const nativeFailure = (message: string, options?: { cause?: unknown }): NativeCodedError => new NativeCodedError(ErrorCode.KVT_NATIVE, message, options);
export const regionUnavailable = (message: string): NativeCodedError => new NativeCodedError(ErrorCode.KVT_REGION_UNAVAILABLE, message);
