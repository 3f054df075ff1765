/**
 * The container deployment (Dockerfile, compose.yaml, deploy/docker/), checked as far as this
 * machine allows: no container engine runs here (the docker client is installed, the daemon is
 * not), so the image is not built and nothing is run in a container. What is checked instead:
 *   - the Dockerfile lints clean (dockerfile-utils, the linter behind VS Code's Dockerfile support)
 *     and keeps its rules: multi-stage, a distroless Node 24 run stage with no RUN (no shell), a
 *     non-root user, exec-form entrypoint and healthcheck; the healthcheck's own script is run
 *     against a real relay process (exit 0) and against a closed port (exit 1);
 *   - compose.yaml is valid for a real compose implementation (Debian's docker-compose 1.29,
 *     `config` with every profile) and every service keeps the hardening docs/DEPLOY.md promises;
 *   - the relay and receiver configs the containers mount pass their roles' config checks.
 * Each check is shown to bite on a broken copy.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { validate } from 'dockerfile-utils';
import YAML from 'yaml';
import { cleanupAll, startRelay, tempDir } from '../helpers/relay.js';
import { repoRoot } from '../helpers/paths.js';
import { reservePort } from '../helpers/ports.js';
import { relayConfigSchema } from '../../relay/config.js';
import { receiverConfigSchema } from '../../receiver/config.js';
import { loadConfigFile } from '../../common/config-file.js';

const run = promisify(execFile);
const dockerfile = () => readFile(path.join(repoRoot, 'Dockerfile'), 'utf8');

after(() => cleanupAll());

/** The instructions of each stage, as [keyword, rest of the line] (continuations joined). */
function stages(text: string): [string, string][][] {
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const out: [string, string][][] = [];
  for (const line of lines) {
    const [keyword, ...rest] = line.split(/\s+/);
    if (keyword!.toUpperCase() === 'FROM') out.push([]);
    out.at(-1)?.push([keyword!.toUpperCase(), rest.join(' ')]);
  }
  return out;
}

/** The rules of the run stage; returns what is wrong (empty when nothing). */
function runStageProblems(text: string): string[] {
  const problems = validate(text).map((d) => `line ${d.range.start.line + 1}: ${d.message}`);
  const all = stages(text);
  if (all.length < 2) problems.push('not a multi-stage build');
  const final = all.at(-1) ?? [];
  const get = (k: string) => final.filter(([kw]) => kw === k).map(([, rest]) => rest);
  if (!/^gcr\.io\/distroless\/nodejs24-/.test(get('FROM')[0] ?? '')) problems.push(`run stage is not distroless Node 24: ${get('FROM')[0]}`);
  if (get('RUN').length > 0) problems.push('the run stage has RUN (it has no shell)');
  const user = get('USER').at(-1);
  if (user === undefined || /^(0|root)\b/.test(user)) problems.push(`the run stage runs as ${user ?? 'root'}`);
  const health = get('HEALTHCHECK').at(-1) ?? '';
  if (!/CMD \[/.test(health) || !health.includes('/healthz')) problems.push(`no exec-form healthcheck on /healthz: ${health}`);
  if (!get('ENTRYPOINT').at(-1)?.startsWith('[')) problems.push('the entrypoint is not in exec form');
  return problems;
}

test('the Dockerfile lints clean and keeps its run-stage rules; a broken copy is caught', async () => {
  assert.deepEqual(runStageProblems(await dockerfile()), []);
  const broken = (await dockerfile()).replace('USER 65532:65532', 'USER root').replace('ENTRYPOINT [', 'RUN true\nENTRYPOINT [').replace('HEALTHCHECK', 'HEALTHCHEK');
  const problems = runStageProblems(broken);
  for (const expected of [/HEALTHCHEK|unknown instruction/i, /runs as root/, /has RUN/, /no exec-form healthcheck/]) {
    assert.ok(problems.some((p) => expected.test(p)), `${expected} in ${JSON.stringify(problems)}`);
  }
});

test('the healthcheck script answers 0 for a running relay and 1 for a closed port', async () => {
  const script = JSON.parse(/HEALTHCHECK[^[]*(\[.*\])/.exec((await dockerfile()).replace(/\\\n/g, ' '))![1]!) as string[];
  assert.equal(script[0], '/nodejs/bin/node');
  const code = script[script.indexOf('-e') + 1]!;
  assert.ok(code.includes('127.0.0.1:8787/healthz'));
  const relay = await startRelay();
  const probe = (port: number) => run(process.execPath, ['-e', code.replace('127.0.0.1:8787', `127.0.0.1:${port}`)]).then(() => 0, (err: { code?: number }) => err.code ?? -1);
  assert.equal(await probe(relay.port), 0);
  assert.equal(await probe(await reservePort()), 1);
});

test('compose.yaml is valid for docker-compose with every profile, and every service keeps the hardening', async () => {
  const { stdout } = await run('docker-compose', ['-f', path.join(repoRoot, 'compose.yaml'), '--profile', 'proxy', '--profile', 'receiver', 'config']);
  const config = YAML.parse(stdout) as { services: Record<string, Record<string, unknown>>; volumes: Record<string, unknown> };
  assert.deepEqual(Object.keys(config.services).sort(), ['proxy', 'receiver', 'relay']);
  for (const [name, s] of Object.entries(config.services)) {
    assert.equal(s['read_only'], true, `${name}: read-only root file system`);
    assert.deepEqual(s['cap_drop'], ['ALL'], `${name}: cap_drop ALL`);
    assert.ok((s['security_opt'] as string[]).includes('no-new-privileges:true'), `${name}: no-new-privileges`);
    assert.equal((s['ulimits'] as Record<string, unknown>)['core'], 0, `${name}: no core dumps`);
    assert.ok(s['mem_limit'] !== undefined && s['mem_limit'] === s['memswap_limit'], `${name}: no swap (memswap_limit = mem_limit)`);
    assert.ok((s['tmpfs'] as string[]).length > 0, `${name}: a tmpfs for anything temporary`);
  }
  const relay = config.services['relay']!;
  assert.equal(relay['mem_limit'], '768m', 'the relay unit\'s MemoryMax');
  assert.deepEqual((relay['volumes'] as string[]).filter((v) => !v.includes(':ro')), ['ghostpipe-state:/var/lib/ghostpipe:rw'], 'the only writable volume holds control-plane state');
  // docker-compose 1.29 prints a host-bound port in the short form "127.0.0.1:8787:8787/tcp".
  const ports = (relay['ports'] as (string | { target: number; published?: number; host_ip?: string })[]).map((p) => (typeof p === 'string' ? p : `${p.host_ip ?? '0.0.0.0'}:${p.published}:${p.target}`));
  assert.ok(ports.some((p) => p.startsWith('127.0.0.1:8787:8787')), `the plain relay port is published on loopback only: ${ports.join(', ')}`);
  assert.ok(!ports.some((p) => /:8787(\/tcp)?$/.test(p) && !p.startsWith('127.0.0.1:')), `the plain relay port is published elsewhere: ${ports.join(', ')}`);
  assert.ok(JSON.stringify(relay['healthcheck']).includes('/healthz'));
  assert.deepEqual(config.services['proxy']!['profiles'], ['proxy']);
  assert.ok((config.services['proxy']!['volumes'] as string[]).some((v) => v.includes('deploy/nginx/ghostpipe.conf:/etc/nginx/conf.d/default.conf:ro')), 'the proxy runs the shipped nginx config');
  assert.deepEqual(config.services['receiver']!['profiles'], ['receiver']);

  const dir = await tempDir();
  const broken = path.join(dir, 'compose.yaml');
  await writeFile(broken, (await readFile(path.join(repoRoot, 'compose.yaml'), 'utf8')).replace('mem_limit: 768m', 'mem_limit: [768m]'));
  const refused = await run('docker-compose', ['-f', broken, 'config']).then(() => undefined, (err: { stderr?: string }) => err.stderr ?? 'failed');
  assert.match(refused ?? '', /mem_limit/, 'a broken compose file is refused, naming the setting');
});

test('the configs the containers mount pass their roles\' config checks', () => {
  const relay = loadConfigFile(path.join(repoRoot, 'deploy/docker/relay.yaml'), relayConfigSchema);
  assert.deepEqual(relay.trustedProxies, ['127.0.0.1'], 'nginx shares the relay container\'s network namespace');
  assert.equal(relay.stateDir, '/var/lib/ghostpipe/relay');
  const receiver = loadConfigFile(path.join(repoRoot, 'deploy/docker/receiver.yaml'), receiverConfigSchema);
  assert.equal(receiver.relay.url, 'http://relay:8787');
  // The image cannot be built here; the build context must still hold everything the build copies.
  for (const [keyword, rest] of stages(readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8')).flat()) {
    if (keyword !== 'COPY' || rest.startsWith('--from')) continue;
    for (const source of rest.split(/\s+/).slice(0, -1)) assert.ok(existsSync(path.join(repoRoot, source)), `COPY ${source}: not in the repository`);
  }
});
