/** A test CA and a server certificate for IP 127.0.0.1 signed by it, made at test time with the openssl CLI. */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

export interface TestCa { ca: string; cert: string; key: string }

/** Writes `<name>-ca.pem`, `<name>-relay.pem` and `<name>-relay.key` into `dir`; returns their paths. */
export function makeCa(dir: string, name: string): TestCa {
  const f = (n: string) => path.join(dir, `${name}-${n}`);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', `/CN=${name} test CA`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign', '-keyout', f('ca.key'), '-out', f('ca.pem'));
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', f('relay.key'), '-out', f('relay.csr'));
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', f('relay.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', f('ext.cnf'), '-out', f('relay.pem'));
  return { ca: f('ca.pem'), cert: f('relay.pem'), key: f('relay.key') };
}
