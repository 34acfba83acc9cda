/**
 * The error codes as they were on the wire before the table existed, in
 * order: the table may only append to this list (codes are never renamed,
 * reused or reordered; KVT_POOL_EXHAUSTED, never sent, is retired).
 */
export const ERROR_CODES_FOR_TEST = [
  'KVT_BAD_FRAME', 'KVT_FRAME_TOO_LARGE', 'KVT_UNKNOWN_MESSAGE', 'KVT_BAD_REQUEST', 'KVT_NOT_HELLO',
  'KVT_PROTOCOL_VERSION', 'KVT_NAMESPACE_MISMATCH', 'KVT_NOT_FOUND', 'KVT_LEASE_NOT_FOUND', 'KVT_BAD_BLOCK_ID',
  'KVT_BAD_LAYOUT', 'KVT_NOT_REGISTERED', 'KVT_REGION_UNAVAILABLE', 'KVT_CONFIG', 'KVT_SOCKET_IN_USE',
  'KVT_TIMEOUT', 'KVT_CONNECTION_CLOSED', 'KVT_VALKEY_UNAVAILABLE', 'KVT_VALKEY_AUTH', 'KVT_CORRUPT_VALUE',
  'KVT_NATIVE', 'KVT_INTERNAL', 'KVT_VALKEY_REFUSED', 'KVT_FORBIDDEN', 'KVT_USAGE',
];
