import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isMap, isScalar, isSeq, parse, parseDocument } from 'yaml';
import { loadConfigFile } from '../../common/config-file.js';
import { check, type Path, type Schema } from '../../common/schema.js';
import { agentConfigSchema } from '../../agent/config.js';
import { relayConfigSchema } from '../../relay/config.js';
import { receiverConfigSchema } from '../../receiver/config.js';
import { repoRoot } from '../helpers/paths.js';

// The example configs are documentation; validating them keeps them from drifting from the schemas.
// (config/agent.example.yaml is also loaded in agent/config.test.ts.)
describe('config/*.example.yaml', () => {
  it('relay.example.yaml is a valid relay config', () => {
    const config = loadConfigFile(path.join(repoRoot, 'config', 'relay.example.yaml'), relayConfigSchema);
    // The example states the defaults the relay runs on without a config.
    assert.equal(config.memoryCap, 512 * 1024 * 1024);
    assert.equal(config.ttl, 24 * 3600 * 1000);
    assert.ok(['free', 'pro', 'enterprise'].every((name) => name in config.plans));
    assert.deepEqual(config.audit, relayConfigSchema.parse({}, [], { issues: [] }).audit);
    assert.deepEqual(config.audit, { maxFileSize: 16 * 1024 * 1024, keepFiles: 8, authFailureBuckets: 64 });
  });
  it('receiver.example.yaml is a valid receiver config', () => {
    const config = loadConfigFile(path.join(repoRoot, 'config', 'receiver.example.yaml'), receiverConfigSchema);
    assert.ok(config.sinks.length > 0);
  });
  it('agent.example.yaml is a valid agent config with every kind of tap and Modbus transport', () => {
    const config = loadConfigFile(path.join(repoRoot, 'config', 'agent.example.yaml'), agentConfigSchema);
    assert.deepEqual([...new Set(config.taps.map((t) => t.type))].sort(), ['modbus', 'mqtt', 'opcua']);
    const transports = config.taps.flatMap((t) => (t.type === 'modbus' ? [t.target.transport] : []));
    assert.deepEqual([...new Set(transports)].sort(), ['rtu', 'rtu-over-tcp', 'tcp']);
  });
  it('agent.example.yaml holds the taps of agent/{modbus,opcua,mqtt}/sample.yaml, unchanged', () => {
    const tapsOf = (file: string) => (parse(readFileSync(path.join(repoRoot, file), 'utf8')) as { taps: { name: string }[] }).taps;
    const fromSamples = ['modbus', 'opcua', 'mqtt'].flatMap((kind) => tapsOf(`agent/${kind}/sample.yaml`));
    assert.deepEqual(tapsOf('config/agent.example.yaml'), fromSamples);
  });
  it('agent.example.yaml shows every setting of the agent schema (set or commented out)', () => {
    const shape = schemaShape(agentConfigSchema);
    assert.ok(shape.keyPaths.size > 100, `the schema walk found only ${shape.keyPaths.size} settings`);
    // Spot checks that the walk reaches into lists and tap kinds.
    for (const known of ['relay.quotaRetry', 'taps[]<modbus>.serial.baudRate', 'taps[]<opcua>.auth<certificate>.privateKeyFile', 'taps[]<mqtt>.points[].timestampUnit']) {
      assert.ok(shape.keyPaths.has(known), `schema walk misses ${known}`);
    }
    const text = readFileSync(path.join(repoRoot, 'config', 'agent.example.yaml'), 'utf8');
    const shown = documentedKeyPaths(uncommentSettings(text, shape.keyNames), shape.discriminators);
    const missing = [...shape.keyPaths].filter((key) => !shown.has(key));
    assert.deepEqual(missing, [], `settings missing from config/agent.example.yaml (add them, commented out if an example would be invalid):\n  ${missing.join('\n  ')}`);
    const unknown = [...shown].filter((key) => !shape.keyPaths.has(key));
    assert.deepEqual(unknown, [], `config/agent.example.yaml (with commented settings) shows keys the schema does not have:\n  ${unknown.join('\n  ')}`);
  });
});

// ---- walking a schema ------------------------------------------------------------------------
// Schemas are closures; what they expose is their messages. An s.object meeting an unknown key
// lists its allowed keys, an s.oneOf missing its tag names the variants, an s.array refuses a
// mapping: probing with such values maps the whole tree, down lists and into every tap kind.

interface SchemaShape {
  /** Every setting, e.g. "relay.timeout", "taps[].points[]" lists, "taps[]<modbus>.serial.path" for a oneOf variant. */
  keyPaths: Set<string>;
  /** Every key name, for telling commented-out settings from prose. */
  keyNames: Set<string>;
  /** Shown path of each oneOf → its discriminator key ("taps[]" → "type"). */
  discriminators: Map<string, string>;
}

const PROBE_KEY = 'zz_probe_key';
const samePath = (a: Path, b: Path) => a.length === b.length && a.every((segment, i) => segment === b[i]);

function schemaShape(schema: Schema<unknown>): SchemaShape {
  const shape: SchemaShape = { keyPaths: new Set(), keyNames: new Set(), discriminators: new Map() };
  const join = (shown: string, key: string) => (shown === '' ? key : `${shown}.${key}`);
  /** `wrap` builds a whole document with a value at `at`; `merge` adds the keys a oneOf variant needs. */
  const explore = (wrap: (value: unknown) => unknown, at: Path, shown: string, merge: Record<string, unknown> = {}): void => {
    const issues = check(schema, wrap({ ...merge, [PROBE_KEY]: 1 })).issues;
    const unknownKey = issues.find((issue) => samePath(issue.path, [...at, PROBE_KEY]) && issue.message.startsWith('unknown key; allowed keys: '));
    if (unknownKey) {
      const keys = /^unknown key; allowed keys: (.*?)(?:; did you mean .*)?$/.exec(unknownKey.message)![1]!.split(', ');
      for (const key of keys) {
        shape.keyNames.add(key);
        shape.keyPaths.add(join(shown, key));
        explore((value) => wrap({ ...merge, [key]: value }), [...at, key], join(shown, key));
      }
      return;
    }
    const tagless = issues.find((issue) => issue.path.length === at.length + 1 && samePath(issue.path.slice(0, -1), at) && issue.message.startsWith('required; must be one of '));
    if (tagless) {
      const discriminator = String(tagless.path.at(-1));
      shape.discriminators.set(shown, discriminator);
      for (const variant of tagless.message.slice('required; must be one of '.length).split(', ')) {
        explore(wrap, at, `${shown}<${variant}>`, { ...merge, [discriminator]: variant });
      }
      return;
    }
    if (issues.some((issue) => samePath(issue.path, at) && issue.message.startsWith('must be a list'))) {
      explore((value) => wrap([value]), [...at, 0], `${shown}[]`);
    }
  };
  explore((value) => value, [], '');
  return shape;
}

// ---- reading the example -------------------------------------------------------------------

/**
 * Turns commented-out settings back into YAML: a comment line whose text starts with a known
 * key (`# quotaRetry: 1m`, `#   type: certificate`, `# - name: …`) loses its "# ". Prose comments
 * do not start with a setting name and stay comments.
 */
function uncommentSettings(text: string, keyNames: Set<string>): string {
  return text
    .split('\n')
    .map((line) => {
      const match = /^(\s*)# ((?:- )?\s*([A-Za-z][A-Za-z0-9_-]*):(?: |$).*)$/.exec(line);
      return match && keyNames.has(match[3]!) ? match[1]! + match[2]! : line;
    })
    .join('\n');
}

/** Key paths present in the YAML text, in the notation of schemaShape (duplicate keys, e.g. alternatives, all count). */
function documentedKeyPaths(text: string, discriminators: Map<string, string>): Set<string> {
  const doc = parseDocument(text, { uniqueKeys: false });
  assert.deepEqual(doc.errors.map((e) => e.message), [], 'the example with its settings uncommented must still be YAML');
  const found = new Set<string>();
  const walk = (node: unknown, shown: string): void => {
    if (isSeq(node)) {
      for (const item of node.items) walk(item, `${shown}[]`);
    } else if (isMap(node)) {
      const discriminator = discriminators.get(shown);
      if (discriminator !== undefined) {
        const tag = node.items.find((pair) => isScalar(pair.key) && pair.key.value === discriminator)?.value;
        shown = `${shown}<${isScalar(tag) ? String(tag.value) : '?'}>`;
      }
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : '?';
        const path = shown === '' ? key : `${shown}.${key}`;
        found.add(path);
        walk(pair.value, path);
      }
    }
  };
  walk(doc.contents, '');
  return found;
}
