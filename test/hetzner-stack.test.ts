/**
 * What the Hetzner Cloud stack guarantees (the same as on DigitalOcean): the data volume is never destroyed
 * by Terraform and is mounted by the bootstrap, not by Hetzner; user data changes never replace the
 * server; SSH only from the configured CIDRs; addresses that survive a rebuild. The snapshot records the
 * whole synthesized Terraform; the named tests say what matters.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { LAYOUT } from "../cloud-init/layout.ts";
import { renderFirstBoot } from "../cloud-init/render.ts";
import { hetznerVolumeDevice } from "../stacks/server/hetzner.ts";
import { base64, concreteServerValues, shippedEnvironment } from "../lab/environments.ts";
import { landedFiles } from "./support/user-data.ts";
import { readableSnapshot, type SynthesizedStack, synthesize } from "./support/synth.ts";

const env = shippedEnvironment("examplehz-prod");
const ref = (type: string) => new RegExp(`^\\$\\{${type}\\.[A-Za-z0-9_]+\\.id\\}$`);

describe("examplehz-prod (Hetzner Cloud)", () => {
  let stack: SynthesizedStack;
  beforeAll(() => {
    stack = synthesize(env);
  });

  test("matches its snapshot", () => {
    expect(readableSnapshot(stack.json)).toMatchSnapshot();
    expect(JSON.stringify(readableSnapshot(stack.json.resource.aws_s3_object))).toContain("put /usr/local/lib/kit/bootstrap.sh 0755");
  });

  test("the synthesized user data, references and all, stays within half of Hetzner's 32 KiB cap (size printed)", () => {
    // Here volume.env holds the volume's id (a reference), so it travels in the user data beside the fetcher:
    // this is the size the server gets, give or take the references' resolved lengths.
    const userData: string = stack.resource("hcloud_server").user_data;
    const size = Buffer.byteLength(userData);
    console.log(`examplehz-prod as synthesized: user data ${size} B = ${((100 * size) / 32768).toFixed(1)} % of Hetzner's cap`);
    expect(size).toBeLessThanOrEqual(0.5 * 32768);
    // The one non-secret file that holds a reference is the one-line volume.env: the rest is in the bundle object.
    const entries = [...userData.matchAll(/^ {2}- path: (\S+)$/gm)].map((m) => m[1]);
    expect(entries).toEqual(expect.arrayContaining([LAYOUT.volumeEnvFile, LAYOUT.firstBootFetcher]));
    expect(entries).not.toContain(LAYOUT.kitEnvFile);
    expect(entries).not.toContain(LAYOUT.firstBootBundle);
  });

  test("the first-boot bundle is an object under the environment's prefix, named by its sha256; the server is created after it", () => {
    const object = stack.resource("aws_s3_object");
    const script = gunzipSync(Buffer.from(object.content_base64, "base64")).toString("utf8");
    const sha256 = createHash("sha256").update(script).digest("hex");
    expect(object).toMatchObject({ key: `prod/kit/first-boot/${sha256}.sh.gz`, bucket: expect.stringMatching(ref("aws_s3_bucket")), content_type: "application/gzip" });
    expect(object.lifecycle).toBeUndefined();
    // The backup key reads it (its prefix statement covers <prefix>/*), and no lifecycle rule expires a current
    // version there: only rules whose prefix the key starts with, and those expire noncurrent versions only.
    expect(object.key.startsWith(`${env.names.bucketPrefix}/`)).toBe(true);
    const rules: { filter: { prefix: string }[]; expiration?: { days?: number }[] }[] = stack.resource("aws_s3_bucket_lifecycle_configuration").rule;
    const covering = rules.filter((rule) => object.key.startsWith(rule.filter[0].prefix));
    expect(covering.length).toBeGreaterThan(0);
    for (const rule of covering) expect(rule.expiration?.some((e) => e.days !== undefined) ?? false).toBe(false);
    expect(script).toContain("put /usr/local/lib/kit/bootstrap.sh 0755");
    const objectId = Object.keys(stack.json.resource.aws_s3_object)[0];
    expect(stack.resource("hcloud_server").depends_on).toContain(`aws_s3_object.${objectId}`);
    // The user data names the object and its hash, and holds none of the bundle.
    const userData: string = stack.resource("hcloud_server").user_data;
    expect(userData).toContain(`key=${object.key} `);
    expect(userData).toMatch(new RegExp(`^ +want=${sha256}$`, "m"));
    expect(userData).not.toContain("bootstrap.sh");
    expect(userData).not.toContain("H4sI");
  });

  describe("data is never destroyed by Terraform", () => {
    test("the data volume has prevent_destroy and delete protection, is ext4, and is named from stable ids only", () => {
      expect(stack.resource("hcloud_volume")).toMatchObject({
        name: "pixelco-examplehz-prod-data",
        location: "fsn1",
        size: 10,
        format: "ext4",
        delete_protection: true,
        lifecycle: { prevent_destroy: true },
      });
    });

    test("Hetzner never mounts the volume (automount false on the volume and its attachment): the bootstrap does", () => {
      expect(stack.resource("hcloud_volume").automount).toBe(false);
      expect(stack.resource("hcloud_volume_attachment")).toEqual(
        expect.objectContaining({ automount: false, volume_id: expect.stringMatching(ref("hcloud_volume")), server_id: expect.stringMatching(ref("hcloud_server")) }),
      );
      expect(stack.resource("hcloud_volume").server_id).toBeUndefined();
    });

    test("the server ignores user_data, ssh_keys and image changes (each would replace it; an image applies to new servers only)", () => {
      expect(stack.resource("hcloud_server").lifecycle).toEqual({ ignore_changes: ["user_data", "ssh_keys", "image"] });
    });
  });

  describe("server", () => {
    test("cx23, Debian 13 (the default image), in the configured location, with the kit's labels", () => {
      expect(stack.resource("hcloud_server")).toMatchObject({
        name: "pixelco-examplehz-prod",
        server_type: "cx23",
        image: "debian-13",
        location: "fsn1",
        shutdown_before_deletion: true,
        labels: { managedBy: "kit", agency: "pixelco", client: "examplehz", environment: "prod" },
      });
    });

    test("the user data mounts the volume by its Hetzner device path, built from the volume's id reference", () => {
      const userData: string = stack.resource("hcloud_server").user_data;
      expect(userData).toMatch(/^ {6}VOLUME_DEVICE='\/dev\/disk\/by-id\/scsi-0HC_Volume_\$\{hcloud_volume\.[A-Za-z0-9_]+\.id\}'$/m);
      expect(hetznerVolumeDevice("12345678")).toBe("/dev/disk/by-id/scsi-0HC_Volume_12345678");
    });

    test("every `${` in the user data is a Terraform reference (a shell `${…}` would fail terraform plan)", () => {
      const userData: string = stack.resource("hcloud_server").user_data;
      const interpolations = userData.match(/(?<!\$)\$\{[^}"']*/g) ?? [];
      expect(interpolations.length).toBeGreaterThan(0);
      for (const expression of interpolations) {
        expect(expression).toMatch(/^\$\{(hcloud_volume\.|aws_iam_access_key\.|var\.secret_|base64encode\(|base64gzip\()/);
      }
      expect(userData).not.toContain("%{");
    });

    test("secrets reach the user data only as Terraform references, base64-encoded", () => {
      const userData: string = stack.resource("hcloud_server").user_data;
      expect(userData).toContain("${base64encode(\"AWS_ACCESS_KEY_ID='${aws_iam_access_key.");
      expect(userData).toContain("${var.secret_SESSION_SECRET}");
    });

    test("the server takes the project's registered keys, looked up by name at plan time, and uploads none", () => {
      // Hetzner refuses a key twice in a project, so the stack cannot upload them. Looked up by a data source,
      // a key missing from the project fails the plan; by name on the server, the provider would find out only
      // when it creates the server, half-way through an apply.
      expect(stack.resources("hcloud_ssh_key")).toEqual([]);
      const lookups = stack.json.data.hcloud_ssh_key as Record<string, { name: string }>;
      expect(Object.values(lookups).map(({ name }) => ({ name }))).toEqual(env.sshKeys.map((key) => ({ name: key.name })));
      expect(stack.resource("hcloud_server").ssh_keys).toEqual(Object.keys(lookups).map((id) => `\${data.hcloud_ssh_key.${id}.id}`));
    });

    test("a server_type change resizes CPU and RAM only (keep_disk: a grown disk is permanent)", () => {
      expect(stack.resource("hcloud_server").keep_disk).toBe(true);
    });
  });

  describe("addresses survive a rebuild", () => {
    test("primary IPv4 and IPv6 in the server's location, never deleted with the server (auto_delete false)", () => {
      expect(stack.resources("hcloud_primary_ip")).toEqual([
        expect.objectContaining({ name: "pixelco-examplehz-prod-ipv4", type: "ipv4", location: "fsn1", auto_delete: false }),
        expect.objectContaining({ name: "pixelco-examplehz-prod-ipv6", type: "ipv6", location: "fsn1", auto_delete: false }),
      ]);
    });

    test("both primary IPs have prevent_destroy (a new address breaks DNS and allow-lists)", () => {
      for (const ip of stack.resources("hcloud_primary_ip")) expect(ip.lifecycle).toEqual({ prevent_destroy: true });
    });

    test("the server's public_net links both primary IPs", () => {
      expect(stack.resource("hcloud_server").public_net).toEqual([
        {
          ipv4_enabled: true,
          ipv4: expect.stringMatching(ref("hcloud_primary_ip")),
          ipv6_enabled: true,
          ipv6: expect.stringMatching(ref("hcloud_primary_ip")),
        },
      ]);
    });

    test("outputs: ipv4 is the primary IPv4, ipv6 the server's address in the primary /64; same outputs as DigitalOcean", () => {
      const outputs = stack.json.output;
      expect(outputs.ipv4.value).toMatch(/^\$\{hcloud_primary_ip\.[A-Za-z0-9_]+\.ip_address\}$/);
      expect(outputs.ipv6.value).toMatch(/^\$\{hcloud_server\.[A-Za-z0-9_]+\.ipv6_address\}$/);
      expect(Object.keys(outputs).sort()).toEqual(
        ["access_key_id", "access_keys", "app_port", "bucket", "ipv4", "ipv6", "region", "replica_path", "replica_url", "secret_access_key", "server_ipv4s", "ssh_user", "volume_size_gib"].sort(),
      );
      expect(outputs.server_ipv4s.value).toEqual([outputs.ipv4.value]);
    });
  });

  describe("firewall", () => {
    test("inbound: SSH only from the configured CIDRs, 80/443 from anywhere, nothing else (no out rules: all outbound allowed)", () => {
      const rules = stack.resource("hcloud_firewall").rule.map(({ description: _d, ...rule }: Record<string, unknown>) => rule);
      expect(rules).toEqual([
        { direction: "in", protocol: "tcp", port: "22", source_ips: ["203.0.113.10/32", "2001:db8:1234::/48"] },
        { direction: "in", protocol: "tcp", port: "80", source_ips: ["0.0.0.0/0", "::/0"] },
        { direction: "in", protocol: "tcp", port: "443", source_ips: ["0.0.0.0/0", "::/0"] },
      ]);
    });

    test("applied before first boot (server firewall_ids) and kept applied by the attachment", () => {
      expect(stack.resource("hcloud_server")).toMatchObject({
        firewall_ids: [expect.stringMatching(ref("hcloud_firewall"))],
        ignore_remote_firewall_ids: true,
      });
      expect(stack.resource("hcloud_firewall_attachment")).toEqual(
        expect.objectContaining({ firewall_id: expect.stringMatching(ref("hcloud_firewall")), server_ids: [expect.stringMatching(ref("hcloud_server"))] }),
      );
    });
  });

  describe("providers", () => {
    test("hcloud pinned to 1.68.0, no token in the code (HCLOUD_TOKEN at deploy time); no DigitalOcean without a DNS zone", () => {
      expect(stack.json.terraform.required_providers.hcloud).toEqual({ source: "hetznercloud/hcloud", version: "1.68.0" });
      expect(stack.json.provider.hcloud).toEqual([{}]);
      expect(stack.json.provider.digitalocean).toBeUndefined();
      expect(Object.keys(stack.json.resource).filter((type) => type.startsWith("digitalocean_"))).toEqual([]);
    });

    test("backups stay on the client's S3 bucket, exactly as on DigitalOcean", () => {
      expect(stack.resource("aws_s3_bucket")).toMatchObject({ bucket: "pixelco-examplehz-prod-backups", lifecycle: { prevent_destroy: true } });
      expect(stack.resource("aws_iam_user").name).toBe("pixelco-examplehz-prod-backup");
    });

    test("with a DigitalOcean DNS zone, A/AAAA records point at the primary IPv4 and the server's IPv6", () => {
      const withZone = synthesize({ ...env, domain: { name: "app.acme.example", digitalOceanZone: "acme.example" } });
      expect(withZone.json.provider.digitalocean).toEqual([{}]);
      const records = withZone.resources("digitalocean_record");
      expect(records).toHaveLength(2);
      expect(records).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ domain: "acme.example", name: "app", type: "A", value: expect.stringContaining("hcloud_primary_ip.") }),
          expect.objectContaining({ domain: "acme.example", name: "app", type: "AAAA", value: expect.stringContaining("hcloud_server.") }),
        ]),
      );
    });
  });
});

describe("user data of examplehz-prod with concrete values (what the server receives)", () => {
  const values = concreteServerValues(env, {
    volumeDevice: hetznerVolumeDevice("101234567"),
    appSecrets: { SESSION_SECRET: "x".repeat(64) },
  });
  const boot = renderFirstBoot(env, values, { base64 });
  const userData = boot.userData;
  let scratch: string;
  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), "kit-hetzner-user-data-"));
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  test("passes `cloud-init schema --config-file`", () => {
    const file = join(scratch, "examplehz-prod.yaml");
    writeFileSync(file, userData);
    const result = spawnSync("cloud-init", ["schema", "--config-file", file], { encoding: "utf8" });
    expect(`${result.stdout}${result.stderr}`).toContain("Valid cloud-config");
    expect(result.status).toBe(0);
  });

  test("volume.env names the Hetzner device path, unquoted; kit.env (compressed in the bundle) holds no reference", () => {
    const files = landedFiles(boot);
    expect(files.get(LAYOUT.volumeEnvFile)!.content).toMatch(/^VOLUME_DEVICE=\/dev\/disk\/by-id\/scsi-0HC_Volume_101234567$/m);
    expect(files.get(LAYOUT.kitEnvFile)!.content).not.toMatch(/VOLUME_DEVICE/);
  });

  test("fits Hetzner's 32 KiB user data limit", () => {
    expect(Buffer.byteLength(userData)).toBeLessThan(32 * 1024);
  });
});
