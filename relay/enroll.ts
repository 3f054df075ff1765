/**
 * Device enrollment (docs/API.md "Enrollment and DIDs"): single-use challenges, registration with
 * proof of possession, rebinding a device to a new key once its old key was revoked, DID lookup and
 * device revocation. Plain values in; a response body or a Refusal out. The audit records of
 * these outcomes are written here.
 */
import type { Logger } from '../common/log.js';
import { createHash, timingSafeEqual } from 'node:crypto';
import {
  ENROLL_CONTEXT, enrollmentMessage, kemProof, type ChallengeBody, type DeviceRevokedBody, type DidRecordBody, type RegistrationBody,
} from '../protocol/api/index.js';
import { getProvider } from '../protocol/crypto/provider.js';
import { xwingEncapsulate } from '../protocol/crypto/xwing.js';
import { decodeEnrollmentStatement, FleetStatementError, verifyEnrollmentApproval } from '../protocol/enrollment.js';
import type { FleetApproval } from '../protocol/log-entries.js';
import { didDocument, didFromSigningKey, parseDid } from '../protocol/did.js';
import { keyId, keyIdHex } from '../protocol/keys.js';
import { encodeLogEntry } from '../protocol/log-entries.js';
import type { KeyRecord } from './api-keys.js';
import { CHALLENGE_TTL_MS, FORMER_KEYS_KEPT, type DeviceRecord } from './devices.js';
import { Refusal, notFound, type Outcome } from './refusal.js';
import type { RelayState } from './state.js';

/** A registration request with its fields decoded (sizes already checked). */
export interface Registration {
  signingPublicKey: Uint8Array;
  kemPublicKey: Uint8Array;
  challenge: string;
  kemProof: Uint8Array;
  signature: Uint8Array;
  approval?: FleetApproval;
}

/** `created`: a new device (and a new log leaf); otherwise it was registered before, or rebound now. */
export interface Registered {
  created: boolean;
  body: RegistrationBody;
}

export class Enrollment {
  constructor(private readonly state: RelayState, private readonly logger: Logger) {}

  /** A challenge, and the X-Wing proof-of-possession challenge encapsulated to `kemPublicKey`. */
  challenge(key: KeyRecord, kemPublicKey: Uint8Array): Outcome<ChallengeBody> {
    const issued = this.state.devices.newChallenge(key.id, kemPublicKey, (challenge) => {
      const { ciphertext, sharedSecret } = xwingEncapsulate(kemPublicKey, getProvider());
      const proof = kemProof(challenge, ciphertext, sharedSecret);
      sharedSecret.fill(0);
      return { kemCiphertext: ciphertext, kemProof: proof };
    });
    if (!issued) return new Refusal('rate_limited', 'too many outstanding challenges for this key', CHALLENGE_TTL_MS);
    this.state.audit.record({ event: 'challenge', keyId: key.id, keyLabel: key.label, outcome: 'ok' });
    return { challenge: issued.challenge, expiresAt: new Date(issued.expiresAt).toISOString(), kemCiphertext: Buffer.from(issued.kemCiphertext).toString('base64') };
  }

  /**
   * The fleet approval of a device: with a configured fleet key it is required and verified
   * (signature, exactly these keys, this API key, validity now); without one it is optional, and
   * checked as far as possible without the key (structure, keys, API key, validity). Returns the
   * statement's validity end, or a Refusal.
   */
  private checkApproval(apiKeyId: string, signingPublicKey: Uint8Array, kemPublicKey: Uint8Array, approval: FleetApproval | undefined): Refusal | { notAfter?: number } {
    const fleetPublicKey = this.state.fleetPublicKey;
    if (approval === undefined) {
      return fleetPublicKey ? new Refusal('bad_approval', 'this relay enrolls only devices approved by the fleet key: send fleetStatement and fleetSignature (`ghostpipe device approve`)') : {};
    }
    const { statement, signature } = approval;
    try {
      const s = fleetPublicKey
        ? verifyEnrollmentApproval(statement, signature, { fleetPublicKey, signingPublicKey, kemPublicKey, now: Date.now() })
        : decodeEnrollmentStatement(statement);
      if (!fleetPublicKey) {
        if (Buffer.compare(Buffer.from(s.signingPublicKey), Buffer.from(signingPublicKey)) !== 0 || Buffer.compare(Buffer.from(s.kemPublicKey), Buffer.from(kemPublicKey)) !== 0) {
          return new Refusal('bad_approval', 'the fleet statement names other device keys than this registration');
        }
        if (Date.now() >= s.notAfter || Date.now() < s.notBefore) return new Refusal('bad_approval', `the fleet statement is valid only from ${new Date(s.notBefore).toISOString()} to ${new Date(s.notAfter).toISOString()}`);
      }
      if (s.apiKeyId !== apiKeyId) return new Refusal('bad_approval', `the fleet statement approves this device for API key ${s.apiKeyId}, not ${apiKeyId}`);
      return { notAfter: s.notAfter };
    } catch (err) {
      if (err instanceof FleetStatementError) return new Refusal('bad_approval', `fleet approval: ${err.message}`);
      throw err;
    }
  }

  /**
   * A new fleet approval for an enrolled device (renewal before or after the old one ran out, or
   * a first one for a device enrolled without): checked as at registration, against the keys and
   * API key the device is registered with, and it must hold longer than the one it replaces. It is
   * logged as a new registration leaf (same DID and keys) and the DID record names that leaf, so
   * receivers prove the approval they are shown. The same approval again answers as before.
   */
  async renewApproval(operator: KeyRecord, did: string, approval: FleetApproval): Promise<Outcome<RegistrationBody>> {
    const device = this.find(did);
    if (!device) return notFound();
    const audit = (outcome: string) => this.state.audit.record({ event: 'device_approval', keyId: operator.id, keyLabel: operator.label, did: device.did, outcome });
    if (device.revokedAt !== undefined) {
      audit('device_revoked');
      return new Refusal('device_revoked', 'this device was revoked; a revoked device cannot be approved again');
    }
    const statement = Buffer.from(approval.statement).toString('base64');
    const signature = Buffer.from(approval.signature).toString('base64');
    const signingPublicKey = Buffer.from(device.signingPublicKey, 'base64');
    const kemPublicKey = Buffer.from(device.kemPublicKey, 'base64');
    const body = (): RegistrationBody => ({ did: device.did, document: documentBody(signingPublicKey, kemPublicKey), leafIndex: device.leafIndex, ...approvalBody(device) });
    if (device.fleetStatement === statement && device.fleetSignature === signature) return body();
    const checked = this.checkApproval(device.apiKeyId, signingPublicKey, kemPublicKey, approval);
    if (checked instanceof Refusal) {
      audit('bad_approval');
      return checked;
    }
    const current = device.fleetStatement === undefined ? undefined : decodeEnrollmentStatement(Buffer.from(device.fleetStatement, 'base64'));
    if (current !== undefined && checked.notAfter! <= current.notAfter) {
      audit('not_newer');
      return new Refusal('bad_approval', `the approval must hold longer than the current one (until ${new Date(current.notAfter).toISOString()}); this one ends ${new Date(checked.notAfter!).toISOString()}`);
    }
    const leafIndex = this.state.log.append(encodeLogEntry({
      type: 'registration', signingKeyId: keyId('ML-DSA-65', signingPublicKey), kemKeyId: keyId('X-Wing', kemPublicKey), did: device.did, approval,
    }));
    await this.state.log.flush(); // durable before the record names it (as at registration)
    Object.assign(device, { leafIndex, fleetStatement: statement, fleetSignature: signature });
    await this.state.save();
    audit('ok');
    this.logger.info({ did: device.did, leafIndex, until: new Date(checked.notAfter!).toISOString() }, 'device fleet approval renewed');
    return body();
  }

  async register(key: KeyRecord, request: Registration): Promise<Outcome<Registered>> {
    const { signingPublicKey, kemPublicKey, challenge, signature } = request;
    const audit = (outcome: string, did?: string) => this.state.audit.record({ event: 'register', keyId: key.id, keyLabel: key.label, ...(did ? { did } : {}), outcome });
    const issued = this.state.devices.takeChallenge(challenge, key.id);
    if (!issued) {
      audit('challenge_expired');
      return new Refusal('challenge_expired', 'challenge unknown, already used or expired; ask for a new one');
    }
    // X-Wing proof of possession: only the KEM key's holder could decapsulate the challenge.
    const kemKeyHash = new Uint8Array(createHash('sha256').update(kemPublicKey).digest());
    if (!timingSafeEqual(issued.kemKeyHash, kemKeyHash) || !timingSafeEqual(issued.kemProof, request.kemProof)) {
      audit('bad_kem_proof');
      return new Refusal('bad_signature', 'KEM proof of possession does not verify (kemProof must come from decapsulating this challenge\'s kemCiphertext with the registered X-Wing key)');
    }
    const message = enrollmentMessage(challenge, signingPublicKey, kemPublicKey, request.kemProof);
    if (!getProvider().mlDsa65.verify(signingPublicKey, message, signature, ENROLL_CONTEXT)) {
      audit('bad_signature');
      return new Refusal('bad_signature', 'proof-of-possession signature does not verify');
    }
    const did = didFromSigningKey(signingPublicKey);
    const existing = this.state.devices.get(did);
    // Key rotation: once the operator revoked the key a device is bound to, an unbound device key
    // may take its place with the same proof of possession. No log entry: DID and keys are unchanged.
    const boundKey = existing ? this.state.keys.get(existing.apiKeyId) : undefined;
    const rebind = existing !== undefined && existing.apiKeyId !== key.id && key.did === undefined && (boundKey === undefined || boundKey.revokedAt !== undefined);
    if ((key.did !== undefined && key.did !== did) || (existing && existing.apiKeyId !== key.id && !rebind)) {
      audit('already_bound', did);
      return new Refusal('already_bound', 'this key is bound to another device, or this device to another key');
    }
    const document = documentBody(signingPublicKey, kemPublicKey);
    if (existing) {
      if (existing.revokedAt !== undefined) return new Refusal('device_revoked', 'this device was revoked');
      if (existing.kemPublicKey !== Buffer.from(kemPublicKey).toString('base64')) return new Refusal('already_bound', 'this device is registered with another KEM key');
      if (rebind) {
        existing.formerApiKeyIds = [...(existing.formerApiKeyIds ?? []), existing.apiKeyId].slice(-FORMER_KEYS_KEPT);
        existing.apiKeyId = key.id;
        key.did = did;
        await this.state.save();
        this.logger.info({ did, keyId: key.id, formerKeyId: existing.formerApiKeyIds.at(-1) }, 'device bound to a new API key (the former one is revoked)');
      }
      audit(rebind ? 'rebound' : 'ok', did);
      return { created: false, body: { did, document, leafIndex: existing.leafIndex, ...approvalBody(existing) } };
    }
    const refused = this.checkApproval(key.id, signingPublicKey, kemPublicKey, request.approval);
    if (refused instanceof Refusal) {
      audit('bad_approval', did);
      return refused;
    }
    const approval = request.approval;
    const leafIndex = this.state.log.append(encodeLogEntry({
      type: 'registration', signingKeyId: keyId('ML-DSA-65', signingPublicKey), kemKeyId: keyId('X-Wing', kemPublicKey), did, ...(approval ? { approval } : {}),
    }));
    // The device record names its leaf: the leaf must be durable first, or a crash could leave
    // the record pointing at a position a different leaf takes after the restart.
    await this.state.log.flush();
    this.state.devices.add({
      did, signingPublicKey: Buffer.from(signingPublicKey).toString('base64'), kemPublicKey: Buffer.from(kemPublicKey).toString('base64'),
      signingKeyId: keyIdHex('ML-DSA-65', signingPublicKey), apiKeyId: key.id, registeredAt: Date.now(), leafIndex,
      ...(approval ? { fleetStatement: Buffer.from(approval.statement).toString('base64'), fleetSignature: Buffer.from(approval.signature).toString('base64') } : {}),
    });
    key.did = did;
    await this.state.save();
    audit('ok', did);
    return { created: true, body: { did, document, leafIndex, ...approvalBody(this.state.devices.get(did)!) } };
  }

  /** `did` as it came in the path (percent-decoded): anything but an enrolled DID is not found. */
  device(did: string): Outcome<DidRecordBody> {
    const device = this.find(did);
    if (!device) return notFound();
    const document = documentBody(Buffer.from(device.signingPublicKey, 'base64'), Buffer.from(device.kemPublicKey, 'base64'));
    return {
      did: device.did, document, revoked: device.revokedAt !== undefined,
      registeredAt: new Date(device.registeredAt).toISOString(), leafIndex: device.leafIndex, ...approvalBody(device),
      ...(device.revokedAt !== undefined ? { revokedAt: new Date(device.revokedAt).toISOString(), revocationLeafIndex: device.revocationLeafIndex } : {}),
    };
  }

  /** Logs the revocation once; revoking a revoked device answers the same again. */
  async revoke(operator: KeyRecord, did: string): Promise<Outcome<DeviceRevokedBody>> {
    const device = this.find(did);
    if (!device) return notFound();
    if (device.revokedAt === undefined) {
      device.revocationLeafIndex = this.state.log.append(encodeLogEntry({ type: 'revocation', signingKeyId: Buffer.from(device.signingKeyId, 'hex'), did: device.did }));
      await this.state.log.flush();
      device.revokedAt = Date.now();
      await this.state.save();
      this.state.audit.record({ event: 'device_revoked', keyId: operator.id, keyLabel: operator.label, did: device.did, outcome: 'ok' });
    }
    // Set together with revokedAt, here and when a new log epoch logs revocations again (state.ts).
    return { did: device.did, revoked: true, leafIndex: device.revocationLeafIndex! };
  }

  private find(did: string): DeviceRecord | undefined {
    try {
      parseDid(did);
    } catch {
      return undefined;
    }
    return this.state.devices.get(did);
  }
}

/** The fleet approval as it travels (base64), when the device has one. */
function approvalBody(device: DeviceRecord): { fleetStatement?: string; fleetSignature?: string } {
  return device.fleetStatement !== undefined && device.fleetSignature !== undefined ? { fleetStatement: device.fleetStatement, fleetSignature: device.fleetSignature } : {};
}

/** The DID document as it travels (protocol/api keeps it an open JSON object). */
function documentBody(signingPublicKey: Uint8Array, kemPublicKey: Uint8Array): RegistrationBody['document'] {
  return { ...didDocument({ signingPublicKey, kemPublicKey }) };
}
