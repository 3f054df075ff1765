/**
 * The agent's `firmware:` section (config/agent.example.yaml). Absent: the agent never asks the
 * relay for firmware. Present, it names what the device pins at provisioning — the firmware root
 * and the relay's checkpoint key — what it is (its group and hardware id), and the commands that
 * install a package, check the result and undo it.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { s, type Infer } from '../../common/schema.js';
import { loadPublicKey } from '../../common/keyfile.js';
import { GROUP_PATTERN } from '../../protocol/api/firmware.js';
import { HARDWARE_ID_PATTERN, signedRootFromJson, verifyRoot, type SignedRoot } from '../../protocol/firmware/index.js';

const file = s.string({ minLength: 1, maxLength: 4096, hint: 'a file path' });
const MINUTE = 60_000;

/** argv (no shell: nothing in a manifest reaches a command line) and how long it may run. */
const command = (defaultTimeout: number) => s.object({
  command: s.array(s.string({ minLength: 1, maxLength: 4096 }), { minItems: 1, maxItems: 64 }),
  timeout: s.withDefault(s.duration({ min: 1_000, max: 24 * 60 * MINUTE }), defaultTimeout),
});

/** The install type whose package is a Ghost Pipe release tarball (docs/FIRMWARE.md "Self-update"). */
export const RELEASE_INSTALL_TYPE = 'ghostpipe-release';

/**
 * `release:` (optional): this gateway updates Ghost Pipe itself. The agent hands a verified
 * `ghostpipe-release` package to the release service (`ghostpipe release apply`, run as root by
 * ghostpipe-release.path), which reads these same settings.
 */
const releaseSchema = s.object({
  /** Where releases live: <prefix>/releases/<version>, <prefix>/current -> releases/<version>. */
  prefix: s.withDefault(file, '/opt/ghostpipe'),
  /** The release service's own state (its release counter floor, a switch under way): root's, kept by an uninstall. */
  stateDir: s.withDefault(file, '/var/lib/ghostpipe/release'),
  /** Restarts the units onto the release `current` points at; run after the switch and after a switch back. */
  restart: s.withDefault(command(2 * MINUTE), { command: ['systemctl', 'restart', 'ghostpipe-agent.service'], timeout: 2 * MINUTE }),
  /** The new release must have the relay healthy and a frame of its agent accepted within this, or it is switched back. */
  healthTimeout: s.withDefault(s.duration({ min: 1_000, max: 60 * MINUTE }), 3 * MINUTE),
});

const firmwareObject = s.object({
  /** The firmware root pinned at provisioning (`ghostpipe firmware root` output). */
  root: file,
  /** The relay's checkpoint key (relay.sign.pub): a manifest must be in a checkpoint this key signed. */
  relayPublicKey: file,
  /** The device group this gateway belongs to; a manifest for another group is refused. */
  group: s.string({ pattern: GROUP_PATTERN, hint: 'a group name (lowercase letters, digits, ".", "_", "-"; at most 64)' }),
  /** This gateway's hardware id; a manifest that does not list it is refused. */
  hardwareId: s.string({ pattern: HARDWARE_ID_PATTERN, hint: 'a hardware id (letters, digits, ".", "_", ":", "-"; at most 64)' }),
  /** How often to ask the relay for rollouts (each wait jittered ±20 %). */
  checkInterval: s.withDefault(s.duration({ min: 200, max: 7 * 24 * 60 * MINUTE }), 15 * MINUTE),
  /** Per request while checking and downloading (a 1 MiB chunk on a slow uplink). */
  timeout: s.withDefault(s.duration({ min: 1_000, max: 10 * MINUTE }), MINUTE),
  /** Staging folder for the download (default: <stateDir>/firmware/staging). */
  stagingDir: s.optional(file),
  /** Run with the staged file as its last argument; exit 0 means installed. Packages of install type `command` and the like. */
  install: s.optional(command(10 * MINUTE)),
  /** Run after a successful install; exit 0 means healthy. Also decides an install a restart interrupted. */
  health: s.optional(command(2 * MINUTE)),
  /** Run when the install or the health check failed; exit 0 means the previous release runs again. */
  rollback: s.optional(command(10 * MINUTE)),
  /** Packages of install type `ghostpipe-release`: Ghost Pipe updating itself. */
  release: s.optional(releaseSchema),
});

export const firmwareSchema = s.refine(firmwareObject, (f) => (f.install === undefined && f.release === undefined
  ? 'needs install (a command that installs a package) or release (Ghost Pipe updates itself), or both' : undefined));

export type FirmwareConfig = Infer<typeof firmwareSchema>;
export type CommandConfig = NonNullable<FirmwareConfig['install']>;

/** Where downloads are staged: `stagingDir`, else <stateDir>/firmware/staging (the agent's and the release service's view). */
export const stagingRoot = (config: FirmwareConfig, stateDir: string): string => config.stagingDir ?? path.join(stateDir, 'firmware', 'staging');
export type ReleaseConfig = NonNullable<FirmwareConfig['release']>;

export interface FirmwareSecrets {
  /** The pinned root, checked against its own threshold. */
  root: SignedRoot;
  relayPublicKey: Uint8Array;
}

/** Reads the files the section names; errors name the setting (`loadAgentSecrets` places them). */
export async function loadFirmwareFiles(config: FirmwareConfig): Promise<{ secrets?: FirmwareSecrets; issues: { setting: 'root' | 'relayPublicKey'; message: string }[] }> {
  const issues: { setting: 'root' | 'relayPublicKey'; message: string }[] = [];
  let root: SignedRoot | undefined;
  try {
    const text = await fs.readFile(config.root, 'utf8');
    root = signedRootFromJson(JSON.parse(text));
    verifyRoot(root);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    issues.push({ setting: 'root', message: `${config.root}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}` });
    root = undefined;
  }
  let relayPublicKey: Uint8Array | undefined;
  try {
    relayPublicKey = (await loadPublicKey(config.relayPublicKey, ['ML-DSA-65'])).publicKey;
  } catch (err) {
    issues.push({ setting: 'relayPublicKey', message: (err as Error).message });
  }
  return root && relayPublicKey ? { secrets: { root, relayPublicKey }, issues } : { issues };
}
