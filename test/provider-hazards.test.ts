/**
 * What the providers' own code does that no synthesized attribute shows, and how the kit stays safe around
 * it (issue 14). The stacks' part is asserted next to their snapshots (digitalocean-stack, hetzner-stack);
 * here: the keys the stacks no longer push reach servers through the deploy, and the runbook's steps for
 * what only an operator can do (replacing a running server, retiring a protected volume).
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { LAYOUT } from "../cloud-init/layout.ts";
import { UNITS } from "../cloud-init/server-files.ts";
import { shippedEnvironment } from "../lab/environments.ts";
import { planFiles } from "../scripts/lib/deploy-run.ts";
import { parseState } from "../scripts/lib/state.ts";
import { resolveTarget } from "../scripts/lib/target.ts";
import { REPO_ROOT } from "../app/repo.ts";
import { synthesize } from "./support/synth.ts";

const runbook = readFileSync(join(REPO_ROOT, "docs/runbook.md"), "utf8");

/** The text of one `## title` section of the runbook. */
function section(title: string): string {
  const start = runbook.indexOf(`## ${title}\n`);
  if (start < 0) throw new Error(`docs/runbook.md has no section "## ${title}"`);
  const end = runbook.indexOf("\n## ", start + 1);
  return runbook.slice(start, end < 0 ? undefined : end);
}

/** The bash blocks of a section, each as one command line (continuations joined). */
const bashBlocks = (text: string): string[] =>
  [...text.matchAll(/```bash\n([\s\S]*?)```/g)].map((m) => m[1].replace(/ *\\\n */g, " ").trim());

describe("SSH keys: ignored by the stacks (a change would replace the server), pushed by every deploy", () => {
  const env = shippedEnvironment("example-prod");
  const state = parseState("active_port=8000\napp_port=8000\nbootstrap_done=/srv/app/releases/a\nvolume_device=/dev/disk/by-id/scsi-0DO_Volume_x\n");
  const authorizedKeys = `${LAYOUT.authorizedKeysDir}/${LAYOUT.users.deploy}`;

  test("the stacks leave a key change to the deploy on both providers", () => {
    expect(synthesize(env).resource("digitalocean_droplet").lifecycle.ignore_changes).toContain("ssh_keys");
    expect(synthesize(shippedEnvironment("examplehz-prod")).resource("hcloud_server").lifecycle.ignore_changes).toContain("ssh_keys");
  });

  test("a key added to the client file is in the authorized keys file the deploy pushes, with no secrets known here", () => {
    const joe = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHqzmLyv+Wx9bCRAqJpVnsXWyquQ7bgNXXEwsUGdCrnt joe@agency";
    const withJoe = { ...env, sshKeys: [...env.sshKeys, { name: "joe", publicKey: joe }] };
    const target = resolveTarget(withJoe, { host: "203.0.113.5", outputs: "/nonexistent.json" }, {});
    const { files, left } = planFiles(target, state, {});
    // The secret files wait for their values; the keys never do.
    expect(left).not.toContain(authorizedKeys);
    const pushed = files.find((f) => f.path === authorizedKeys);
    expect(pushed).toMatchObject({ secret: false, early: true });
    const keyLines = pushed!.content.split("\n").filter((line) => line && !line.startsWith("#"));
    expect(keyLines).toEqual([...env.sshKeys.map((k) => k.publicKey.trim()), joe]);
  });
});

describe("runbook: replacing a server that still runs (both providers detach the volume before they shut it down)", () => {
  const text = section("Replacing a server that still runs");
  const [diff, release, deploy] = bashBlocks(text);
  const remote = /^ssh \S+ '(.*)'$/.exec(release)?.[1] ?? "";

  test("the steps are: look at the plan, let go of the volume, then deploy", () => {
    expect(diff).toMatch(/^npx cdktf diff example-prod/);
    expect(remote).not.toBe("");
    expect(deploy).toBe("npx cdktf deploy example-prod");
  });

  test("every unit that needs the volume is stopped, timers first, the app before Litestream, then the volume unmounted", () => {
    const dir = join(REPO_ROOT, "cloud-init/templates/systemd");
    const needVolume = readdirSync(dir).filter((name) => readFileSync(join(dir, name), "utf8").includes("RequiresMountsFor={{volumeMount}}"));
    expect(needVolume.length).toBeGreaterThanOrEqual(4);
    const stopped = [...remote.matchAll(/systemctl stop ([^&]*)/g)].map((m) => m[1].trim().split(/\s+/).map((u) => u.replace(/"/g, "")));
    const order = stopped.flat();
    for (const unit of needVolume) expect(order).toContain(unit.replace("@.service", "@*.service"));
    // A timer left running would start its unit, which mounts the volume again (RequiresMountsFor), or whose
    // unit writes into the volume's database (the watcher's heartbeat) and keeps it busy.
    const timers = Object.keys(UNITS).filter((name) => name.endsWith(".timer"));
    expect(stopped[0].sort()).toEqual(timers.sort());
    expect(order.indexOf("app@*.service")).toBeLessThan(order.indexOf(LAYOUT.units.litestream));
    expect(remote).toMatch(new RegExp(`umount ${LAYOUT.volumeMount} && echo "volume released"$`));
    expect(remote.indexOf("umount")).toBeGreaterThan(remote.lastIndexOf("systemctl stop"));
  });

  test("the command sent over SSH is valid bash", () => {
    const result = spawnSync("bash", ["-n", "-c", remote], { encoding: "utf8" });
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
  });
});

describe("runbook: retiring a protected volume (the hcloud provider does not lift delete_protection, #1206)", () => {
  const text = section("Retiring an environment");
  const env = shippedEnvironment("examplehz-prod");

  test("three steps: keep the data, lift Hetzner's protection, take the guarded resources out of state before the destroy", () => {
    expect(text).toContain("issue 1206");
    const lines = bashBlocks(text).join("\n");
    const at = (needle: string) => {
      const i = lines.indexOf(needle);
      expect(i).toBeGreaterThanOrEqual(0);
      return i;
    };
    expect(at(`scripts/drill.ts ${env.stackName}`)).toBeLessThan(at(`hcloud volume disable-protection ${env.names.volume} delete`));
    expect(at("disable-protection")).toBeLessThan(at("terraform state rm"));
    expect(at("terraform state rm")).toBeLessThan(at(`npx cdktf destroy ${env.stackName}`));
    expect(at(`npx cdktf destroy ${env.stackName}`)).toBeLessThan(at(`hcloud volume delete ${env.names.volume}`));
  });

  test("what it takes out of state is every resource with prevent_destroy in the stacks", () => {
    const pattern = /grep -E '\^\(([^)]*)\)'/.exec(bashBlocks(text).join("\n"))?.[1].split("|") ?? [];
    for (const name of ["example-prod", "examplehz-prod"]) {
      const { json } = synthesize(shippedEnvironment(name));
      const guarded = Object.entries(json.resource as Record<string, Record<string, any>>)
        .filter(([, byId]) => Object.values(byId).some((r) => r.lifecycle?.prevent_destroy))
        .map(([type]) => type);
      expect(guarded.length).toBeGreaterThan(0);
      for (const type of guarded) expect(pattern.some((prefix) => type.startsWith(prefix))).toBe(true);
    }
  });

  test("no binding claims any more that Terraform lifts the protection", () => {
    for (const file of ["volume.ts", "primary-ip.ts"]) {
      const source = readFileSync(join(REPO_ROOT, "stacks/server/hcloud", file), "utf8");
      expect(source).not.toMatch(/Terraform lifts it/);
      expect(source).toContain("issue 1206");
    }
  });
});
