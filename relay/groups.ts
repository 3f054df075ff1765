/**
 * Device groups (docs/API.md "Groups"): which enrolled devices a firmware rollout may target.
 * Membership is control-plane state (devices.json, on each device record) and every change is an
 * audit event. Plain values in; a response body or a Refusal out.
 */
import type { Logger } from '../common/log.js';
import { GROUP_PATTERN, type GroupMembershipBody, type GroupsBody } from '../protocol/api/index.js';
import type { KeyRecord } from './api-keys.js';
import { badRequest, notFound, type Outcome } from './refusal.js';
import type { RelayState } from './state.js';

/** More groups than a site has lines; bounds devices.json. */
export const MAX_GROUPS_PER_DEVICE = 32;

export class Groups {
  constructor(private readonly state: RelayState, private readonly logger: Logger) {}

  list(): GroupsBody {
    const groups: Record<string, string[]> = {};
    for (const device of this.state.devices.all()) {
      if (device.revokedAt !== undefined) continue;
      for (const group of device.groups ?? []) (groups[group] ??= []).push(device.did);
    }
    for (const dids of Object.values(groups)) dids.sort();
    return { groups };
  }

  /** The enrolled, not revoked members of `group`. */
  members(group: string): string[] {
    return this.state.devices.all().filter((d) => d.revokedAt === undefined && d.groups?.includes(group)).map((d) => d.did);
  }

  async set(operator: KeyRecord, group: string, did: string, member: boolean): Promise<Outcome<GroupMembershipBody>> {
    if (!GROUP_PATTERN.test(group)) return badRequest(`group must match ${GROUP_PATTERN.source}`);
    const device = this.state.devices.get(did);
    if (!device) return notFound();
    const current = new Set(device.groups ?? []);
    if (current.has(group) !== member) {
      if (member && current.size >= MAX_GROUPS_PER_DEVICE) return badRequest(`a device is in at most ${MAX_GROUPS_PER_DEVICE} groups`);
      if (member) current.add(group);
      else current.delete(group);
      device.groups = [...current].sort();
      await this.state.save();
      this.state.audit.record({ event: member ? 'group_added' : 'group_removed', keyId: operator.id, keyLabel: operator.label, did, group, outcome: 'ok' });
      this.logger.info({ did, group, by: operator.id }, member ? 'device added to group' : 'device removed from group');
    }
    return { group, did, member };
  }
}
