/**
 * The backup user's two access-key slots (backups.accessKeys, scripts/rotate-keys.ts) and the volume size
 * output. The shipped stacks' snapshots hold one slot (test/digitalocean-stack.test.ts); here each shape a
 * rotation passes through is synthesized and what matters is asserted: which keys exist under which
 * construct ids, which one the server gets, and what the outputs tell the scripts.
 */
import type { AccessKeySlot } from "../app/config/fields.ts";
import type { ResolvedEnvironment } from "../app/config/types.ts";
import { ACCESS_KEY_IDS } from "../stacks/backup-bucket.ts";
import { shippedEnvironment } from "../lab/environments.ts";
import { type SynthesizedStack, synthesize } from "./support/synth.ts";

const withSlots = (slots: readonly AccessKeySlot[]): ResolvedEnvironment => {
  const env = shippedEnvironment("example-prod");
  return { ...env, backups: { ...env.backups, accessKeys: slots } };
};
/** The access keys' Terraform names (construct id + cdktf's hash suffix) in the synthesized stack. */
const keyNames = (stack: SynthesizedStack) => Object.keys(stack.json.resource.aws_iam_access_key).sort();
/** The user data's s3.env refers to this key. */
const serverKey = (stack: SynthesizedStack) => {
  const droplet = stack.resource("digitalocean_droplet");
  return /aws_iam_access_key\.([A-Za-z0-9_]+)\.id/.exec(JSON.stringify(droplet.user_data))?.[1];
};

describe.each<[string, readonly AccessKeySlot[]]>([
  ["at rest", ["a"]],
  ["rotating a → b", ["a", "b"]],
  ["after rotating", ["b"]],
  ["rotating b → a", ["b", "a"]],
])("backups.accessKeys %s: %j", (_name, slots) => {
  let stack: SynthesizedStack;
  beforeAll(() => {
    stack = synthesize(withSlots(slots));
  });

  test("one key per slot listed, each under its slot's construct id, all of the one backup user", () => {
    const names = keyNames(stack);
    expect(names).toHaveLength(slots.length);
    for (const slot of slots) expect(names.filter((n) => new RegExp(`^Backups_${ACCESS_KEY_IDS[slot]}_[0-9A-F]{8}$`).test(n))).toHaveLength(1);
    for (const key of stack.resources("aws_iam_access_key")) expect(key.user).toMatch(/^\$\{aws_iam_user\.Backups_BackupUser_[0-9A-F]{8}\.name\}$/);
  });

  test("the server and the access_key_id/secret_access_key outputs get the newest slot (the last listed)", () => {
    const newest = slots[slots.length - 1];
    const name = keyNames(stack).find((n) => n.startsWith(`Backups_${ACCESS_KEY_IDS[newest]}_`))!;
    expect(serverKey(stack)).toBe(name);
    expect(stack.json.output.access_key_id.value).toBe(`\${aws_iam_access_key.${name}.id}`);
    expect(stack.json.output.secret_access_key).toMatchObject({ value: `\${aws_iam_access_key.${name}.secret}`, sensitive: true });
  });

  test("access_keys lists every key oldest first with its id and creation time, and no secret", () => {
    const listed = stack.json.output.access_keys;
    expect(listed.sensitive).toBeUndefined();
    expect(listed.value.map((k: { slot: string }) => k.slot)).toEqual(slots);
    for (const key of listed.value) {
      expect(key).toEqual({ slot: key.slot, id: expect.stringMatching(/\.id\}$/), created: expect.stringMatching(/\.create_date\}$/) });
    }
    expect(JSON.stringify(listed)).not.toContain(".secret");
  });
});

test("slot a keeps the construct id the single key always had: an existing stack's key is not replaced", () => {
  expect(ACCESS_KEY_IDS.a).toBe("BackupUserKey");
  expect(keyNames(synthesize(withSlots(["a"])))).toEqual([expect.stringMatching(/^Backups_BackupUserKey_[0-9A-F]{8}$/)]);
});

test("volume_size_gib is the configured size, the deployed size synth compares against (volumes never shrink)", () => {
  const env = shippedEnvironment("example-staging");
  expect(synthesize(env).json.output.volume_size_gib.value).toBe(env.volume.sizeGiB);
});
