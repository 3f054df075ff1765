/**
 * The fleet approval file `ghostpipe device approve` writes and `ghostpipe enroll --approval` reads
 * (docs/PROTOCOL.md "Fleet enrollment"). JSON for people to read; the statement and the signature
 * (base64) are what counts, and the readable fields must agree with the statement.
 */
import { promises as fs } from 'node:fs';
import { decodeEnrollmentStatement, FleetStatementError, type EnrollmentStatement } from '../protocol/enrollment.js';
import { ML_DSA65 } from '../protocol/crypto/sizes.js';
import { keyIdHex } from '../protocol/keys.js';
import type { FleetApprovalBytes } from './relay-client.js';

export const APPROVAL_FILE_TYPE = 'ghostpipe-fleet-approval';

export interface ApprovalFile {
  type: typeof APPROVAL_FILE_TYPE;
  version: 1;
  did: string;
  apiKeyId: string;
  notBefore: string;
  notAfter: string;
  fleetKeyId: string;
  statement: string;
  signature: string;
}

export function approvalFileText(statement: EnrollmentStatement, bytes: FleetApprovalBytes, fleetPublicKey: Uint8Array): string {
  const file: ApprovalFile = {
    type: APPROVAL_FILE_TYPE, version: 1, did: statement.did, apiKeyId: statement.apiKeyId,
    notBefore: new Date(statement.notBefore).toISOString(), notAfter: new Date(statement.notAfter).toISOString(),
    fleetKeyId: keyIdHex('ML-DSA-65', fleetPublicKey),
    statement: Buffer.from(bytes.statement).toString('base64'), signature: Buffer.from(bytes.signature).toString('base64'),
  };
  return JSON.stringify(file, null, 2) + '\n';
}

/** Reads and checks an approval file's structure (the signature is for the relay and receivers to verify). */
export async function readApprovalFile(file: string): Promise<FleetApprovalBytes & { statementFields: EnrollmentStatement }> {
  let value: Partial<ApprovalFile>;
  try {
    value = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<ApprovalFile>;
  } catch (err) {
    throw new Error(`${file}: cannot read the fleet approval: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (value?.type !== APPROVAL_FILE_TYPE || value.version !== 1) throw new Error(`${file}: not a fleet approval (type "${APPROVAL_FILE_TYPE}", version 1) from \`ghostpipe device approve\``);
  if (typeof value.statement !== 'string' || typeof value.signature !== 'string') throw new Error(`${file}: "statement" and "signature" must be base64 strings`);
  const statement = new Uint8Array(Buffer.from(value.statement, 'base64'));
  const signature = new Uint8Array(Buffer.from(value.signature, 'base64'));
  let fields: EnrollmentStatement;
  try {
    fields = decodeEnrollmentStatement(statement);
  } catch (err) {
    if (err instanceof FleetStatementError) throw new Error(`${file}: the fleet statement is malformed: ${err.message}`);
    throw err;
  }
  if (signature.length !== ML_DSA65.signature) throw new Error(`${file}: the fleet signature must be ${ML_DSA65.signature} bytes, got ${signature.length}`);
  if (value.did !== fields.did || value.apiKeyId !== fields.apiKeyId) throw new Error(`${file}: "did" or "apiKeyId" disagrees with the signed statement`);
  return { statement, signature, statementFields: fields };
}
