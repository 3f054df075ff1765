/**
 * Every refusal the relay sends: `{ "error": <code>, "message": <text> }` with this status.
 * docs/API.md's "Error codes" table lists exactly these rows (protocol/api/errors.test.ts).
 * Codes are stable; messages are for humans.
 */
export const RELAY_ERRORS = {
  bad_request: 400,
  truncated_body: 400,
  malformed_envelope: 400,
  missing_key: 401,
  invalid_key: 401,
  key_revoked: 401,
  quota_exceeded: 402,
  forbidden: 403,
  device_not_enrolled: 403,
  device_revoked: 403,
  wrong_signer: 403,
  bad_signature: 403,
  bad_approval: 403,
  not_found: 404,
  method_not_allowed: 405,
  too_slow: 408,
  duplicate: 409,
  already_bound: 409,
  last_operator_key: 409,
  challenge_expired: 410,
  lease_expired: 410,
  download_complete: 410,
  log_pruned: 410,
  too_large: 413,
  unsupported_media_type: 415,
  unknown_recipient: 422,
  not_in_group: 422,
  incomplete_package: 409,
  rollout_halted: 409,
  rate_limited: 429,
  too_many_uploads: 429,
  too_many_connections: 429,
  internal: 500,
  log_corrupt: 500,
  log_busy: 503,
  shutting_down: 503,
  memory_full: 507,
  key_memory_full: 507,
} as const satisfies Record<string, number>;

export type RelayErrorCode = keyof typeof RELAY_ERRORS;

/** The JSON body of every refusal. */
export interface RelayErrorBody {
  error: RelayErrorCode;
  message: string;
}

export function isRelayErrorCode(value: unknown): value is RelayErrorCode {
  return typeof value === 'string' && Object.hasOwn(RELAY_ERRORS, value);
}
