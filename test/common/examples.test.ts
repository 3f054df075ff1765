import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { loadConfigFile } from '../../common/config-file.js';
import { relayConfigSchema } from '../../relay/config.js';
import { receiverConfigSchema } from '../../receiver/config.js';
import { repoRoot } from '../helpers/paths.js';

// The example configs are documentation; validating them keeps them from drifting from the schemas.
// (config/agent.example.yaml is checked in test/agent/config.test.ts.)
describe('config/*.example.yaml', () => {
  it('relay.example.yaml is a valid relay config', () => {
    const config = loadConfigFile(path.join(repoRoot, 'config', 'relay.example.yaml'), relayConfigSchema);
    // The example states the defaults the relay runs on without a config.
    assert.equal(config.memoryCap, 512 * 1024 * 1024);
    assert.equal(config.ttl, 24 * 3600 * 1000);
    assert.ok(['free', 'pro', 'enterprise'].every((name) => name in config.plans));
  });
  it('receiver.example.yaml is a valid receiver config', () => {
    const config = loadConfigFile(path.join(repoRoot, 'config', 'receiver.example.yaml'), receiverConfigSchema);
    assert.ok(config.sinks.length > 0);
  });
});
