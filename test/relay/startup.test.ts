/** Startup: config errors name file, line and path; direct HTTPS with a configured certificate. */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { cliPath } from '../helpers/paths.js';
import { cleanupAll, startRelay, tempDir } from '../helpers/relay.js';

after(cleanupAll);

function run(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cliPath, ...args], { cwd, timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('an invalid config is refused with file, line and path, exit code 2, nothing created', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'relay.yaml');
  await writeFile(file, 'listen:\n  - 127.0.0.1:0\nmemoryCap: lots\nttl: 24h\nleaseTimout: 30s\n');
  const result = await run(['relay', '--config', file], dir);
  assert.equal(result.code, 2, result.stderr);
  assert.match(result.stderr, /relay\.yaml:3:\d+: memoryCap/);
  assert.match(result.stderr, /leaseTimout/);
  const missing = await run(['relay', '--config', path.join(dir, 'nope.yaml')], dir);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /nope\.yaml/);
});

test('direct HTTPS with the configured certificate and key', async () => {
  const dir = await tempDir();
  const cert = path.join(dir, 'relay.crt');
  const key = path.join(dir, 'relay.key');
  await new Promise<void>((resolve, reject) => execFile('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], (err) => (err ? reject(err) : resolve())));
  const relay = await startRelay({ tls: { cert, key } }, { dir });
  const ca = await readFile(cert);
  const body = await new Promise<string>((resolve, reject) => {
    https.get(`https://127.0.0.1:${relay.port}/healthz`, { ca }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve(text));
    }).on('error', reject);
  });
  assert.equal(JSON.parse(body).status, 'ok');
  assert.equal(await relay.stop(), 0);
});

test('SIGTERM during the start (at its first log line) ends in the clean stop: exit 0, not the default action', async () => {
  const dir = await tempDir();
  const configFile = path.join(dir, 'relay.json');
  await writeFile(configFile, JSON.stringify({ listen: ['127.0.0.1:0'], stateDir: path.join(dir, 'state'), logLevel: 'info' }));
  const child = spawn(process.execPath, [cliPath, 'relay', '--config', configFile], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let signalled = false;
  child.stdout!.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
    if (!signalled) {
      signalled = true;
      child.kill('SIGTERM');
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  assert.equal(signal, null, `killed by ${signal}: the handler was not installed yet\n${output}`);
  assert.equal(code, 0, output);
  assert.match(output, /"msg":"signal received"/);
  assert.match(output, /"msg":"relay listening"/, 'the start completed before the stop');
});
