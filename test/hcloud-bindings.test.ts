/**
 * The hand-written hcloud bindings (stacks/server/hcloud) pin the provider's attribute names and types:
 * every config field is synthesized under its snake_case name with the type the provider's schema has
 * (the hcloud 1.68.0 provider's docs/resources/*.md), in `cdk.tf.json` and in the `cdktf synth --hcl` output alike.
 */
import { type App, TerraformOutput, TerraformStack, Testing, Token } from "cdktf";
import { AGENCY } from "../app/agency.ts";
import { ClientStack } from "../stacks/client-stack.ts";
import { Firewall } from "../stacks/server/hcloud/firewall.ts";
import { FirewallAttachment } from "../stacks/server/hcloud/firewall-attachment.ts";
import { PrimaryIp } from "../stacks/server/hcloud/primary-ip.ts";
import { HcloudProvider } from "../stacks/server/hcloud/provider.ts";
import { HCLOUD_PROVIDER, snakeCase } from "../stacks/server/hcloud/schema.ts";
import { Server } from "../stacks/server/hcloud/server.ts";
import { DataSshKey } from "../stacks/server/hcloud/ssh-key.ts";
import { Volume } from "../stacks/server/hcloud/volume.ts";
import { VolumeAttachment } from "../stacks/server/hcloud/volume-attachment.ts";
import { shippedEnvironment } from "../lab/environments.ts";
import { parseHcl } from "./support/hcl.ts";
import { scratchApp } from "./support/synth.ts";

const labels = { client: "acme", managedBy: "kit" };

/** One of each resource, every field set; references between them as a stack would make them. */
function buildStack(app: App): TerraformStack {
  const stack = new TerraformStack(app, "bindings");
  new HcloudProvider(stack, "Provider", { pollInterval: "1s", pollFunction: "constant", endpoint: "https://api.example/v1" });
  const ipv4 = new PrimaryIp(stack, "Ipv4", { name: "acme-ipv4", type: "ipv4", location: "fsn1", autoDelete: false, deleteProtection: true, labels });
  const ipv6 = new PrimaryIp(stack, "Ipv6", { name: "acme-ipv6", type: "ipv6", location: "fsn1", autoDelete: false });
  const volume = new Volume(stack, "Volume", {
    name: "acme-data",
    size: 10,
    location: "fsn1",
    format: "ext4",
    automount: false,
    deleteProtection: true,
    labels,
    lifecycle: { preventDestroy: true },
  });
  const firewall = new Firewall(stack, "Firewall", {
    name: "acme",
    labels,
    rule: [
      { direction: "in", protocol: "tcp", port: "22", sourceIps: ["203.0.113.4/32"], description: "ssh" },
      { direction: "out", protocol: "icmp", destinationIps: ["0.0.0.0/0", "::/0"] },
    ],
  });
  const server = new Server(stack, "Server", {
    name: "acme",
    serverType: "cx23",
    image: "debian-12",
    location: "fsn1",
    userData: "#cloud-config\n",
    sshKeys: ["acme-jane", Token.asString(new DataSshKey(stack, "Joe", { name: "joe" }).id)],
    publicNet: [{ ipv4Enabled: true, ipv4: ipv4.id, ipv6Enabled: true, ipv6: ipv6.id }],
    firewallIds: [Token.asNumber(firewall.id)],
    ignoreRemoteFirewallIds: true,
    keepDisk: true,
    shutdownBeforeDeletion: true,
    labels,
    lifecycle: { ignoreChanges: ["user_data", "ssh_keys"] },
  });
  new VolumeAttachment(stack, "Attachment", { volumeId: Token.asNumber(volume.id), serverId: Token.asNumber(server.id), automount: false });
  new FirewallAttachment(stack, "FirewallAttachment", {
    firewallId: Token.asNumber(firewall.id),
    serverIds: [Token.asNumber(server.id), 42],
    labelSelectors: ["client=acme"],
  });
  return stack;
}

let json: Record<string, any>;
let hcl: string;
beforeAll(() => {
  json = JSON.parse(Testing.synth(buildStack(scratchApp())));
  hcl = Testing.synthHcl(buildStack(scratchApp())) as string;
});

/** The one resource of `type`, without cdktf's metadata. */
const resource = (type: string): Record<string, unknown> => {
  const [config] = Object.values(json.resource[type] as Record<string, Record<string, unknown>>);
  const { "//": _metadata, ...attributes } = config;
  return attributes;
};

describe("provider", () => {
  test(`hcloud from ${HCLOUD_PROVIDER.source}, pinned to ${HCLOUD_PROVIDER.version}`, () => {
    expect(json.terraform.required_providers.hcloud).toEqual({ source: "hetznercloud/hcloud", version: "1.68.0" });
  });

  test("arguments: poll_interval, poll_function, endpoint; no token (HCLOUD_TOKEN at deploy time)", () => {
    expect(json.provider.hcloud).toEqual([{ endpoint: "https://api.example/v1", poll_function: "constant", poll_interval: "1s" }]);
  });
});

describe("resources: attribute names and types as in the provider's docs", () => {
  test("hcloud_primary_ip: name, type, location, auto_delete (bool), delete_protection (bool), labels", () => {
    expect(Object.values(json.resource.hcloud_primary_ip).map((ip: any) => ({ ...ip, "//": undefined }))).toEqual([
      { "//": undefined, name: "acme-ipv4", type: "ipv4", location: "fsn1", auto_delete: false, delete_protection: true, labels },
      { "//": undefined, name: "acme-ipv6", type: "ipv6", location: "fsn1", auto_delete: false },
    ]);
  });

  test("hcloud_volume: name, size (number), location, format, automount (bool), delete_protection, labels, lifecycle", () => {
    expect(resource("hcloud_volume")).toEqual({
      name: "acme-data",
      size: 10,
      location: "fsn1",
      format: "ext4",
      automount: false,
      delete_protection: true,
      labels,
      lifecycle: { prevent_destroy: true },
    });
  });

  test("hcloud_firewall: name, labels, rule blocks (direction, protocol, port, source_ips/destination_ips, description)", () => {
    expect(resource("hcloud_firewall")).toEqual({
      name: "acme",
      labels,
      rule: [
        { direction: "in", protocol: "tcp", port: "22", source_ips: ["203.0.113.4/32"], description: "ssh" },
        { direction: "out", protocol: "icmp", destination_ips: ["0.0.0.0/0", "::/0"] },
      ],
    });
  });

  test("hcloud_server: name, server_type, image, location, user_data, ssh_keys, public_net block, firewall_ids, keep_disk, flags, labels", () => {
    expect(resource("hcloud_server")).toEqual({
      name: "acme",
      server_type: "cx23",
      image: "debian-12",
      location: "fsn1",
      user_data: "#cloud-config\n",
      ssh_keys: ["acme-jane", "${data.hcloud_ssh_key.Joe.id}"],
      public_net: [
        { ipv4_enabled: true, ipv4: "${hcloud_primary_ip.Ipv4.id}", ipv6_enabled: true, ipv6: "${hcloud_primary_ip.Ipv6.id}" },
      ],
      firewall_ids: ["${hcloud_firewall.Firewall.id}"],
      ignore_remote_firewall_ids: true,
      keep_disk: true,
      shutdown_before_deletion: true,
      labels,
      lifecycle: { ignore_changes: ["user_data", "ssh_keys"] },
    });
  });

  test("hcloud_volume_attachment: volume_id, server_id, automount", () => {
    expect(resource("hcloud_volume_attachment")).toEqual({
      volume_id: "${hcloud_volume.Volume.id}",
      server_id: "${hcloud_server.Server.id}",
      automount: false,
    });
  });

  test("data hcloud_ssh_key: looked up by name; its id (Number) is what a server's ssh_keys takes", () => {
    const { "//": _metadata, ...attributes } = json.data.hcloud_ssh_key.Joe;
    expect(attributes).toEqual({ name: "joe" });
  });

  test("hcloud_firewall_attachment: firewall_id, server_ids, label_selectors", () => {
    expect(resource("hcloud_firewall_attachment")).toEqual({
      firewall_id: "${hcloud_firewall.Firewall.id}",
      server_ids: ["${hcloud_server.Server.id}", 42],
      label_selectors: ["client=acme"],
    });
  });

  test("unset optional fields are left out (the provider's defaults apply)", () => {
    const app = scratchApp();
    const stack = new TerraformStack(app, "minimal");
    new Volume(stack, "Volume", { name: "v", size: 10, location: "nbg1" });
    const synthesized = JSON.parse(Testing.synth(stack));
    const keys = Object.keys(Object.values(synthesized.resource.hcloud_volume)[0] as object).filter((k) => k !== "//");
    expect(keys.sort()).toEqual(["location", "name", "size"]);
  });

  test("exported attributes are read under their schema names and types", () => {
    const app = scratchApp();
    const stack = new TerraformStack(app, "getters");
    const ip = new PrimaryIp(stack, "Ip", { name: "i", type: "ipv4", location: "fsn1" });
    const volume = new Volume(stack, "Volume", { name: "v", size: 10, location: "fsn1" });
    const server = new Server(stack, "Server", { name: "s", serverType: "cx23", image: "debian-12", location: "fsn1" });
    const read: Record<string, string | number> = {
      ip_id: ip.id,
      ip_address: ip.ipAddress,
      ip_network: ip.ipNetwork,
      volume_id: volume.id,
      volume_device: volume.linuxDevice,
      server_id: server.id,
      server_ipv4: server.ipv4Address,
      server_ipv6: server.ipv6Address,
    };
    for (const [name, value] of Object.entries(read)) new TerraformOutput(stack, name, { value });
    const outputs = JSON.parse(Testing.synth(stack)).output as Record<string, { value: unknown }>;
    expect(Object.fromEntries(Object.entries(outputs).map(([name, o]) => [name, o.value]))).toEqual({
      ip_id: "${hcloud_primary_ip.Ip.id}",
      ip_address: "${hcloud_primary_ip.Ip.ip_address}",
      ip_network: "${hcloud_primary_ip.Ip.ip_network}",
      volume_id: "${hcloud_volume.Volume.id}",
      volume_device: "${hcloud_volume.Volume.linux_device}",
      server_id: "${hcloud_server.Server.id}",
      server_ipv4: "${hcloud_server.Server.ipv4_address}",
      server_ipv6: "${hcloud_server.Server.ipv6_address}",
    });
    // Number in the provider schema: a number token, usable where the API takes an id.
    expect(typeof ip.id).toBe("number");
    expect(typeof volume.id).toBe("string");
  });

  test("field names map to the provider's snake_case names", () => {
    expect(["serverType", "ipv4Enabled", "ignoreRemoteFirewallIds", "linuxDevice", "sourceIps"].map(snakeCase)).toEqual([
      "server_type",
      "ipv4_enabled",
      "ignore_remote_firewall_ids",
      "linux_device",
      "source_ips",
    ]);
  });
});

describe("`cdktf synth --hcl` output", () => {
  test("every resource is written with its attributes, blocks as blocks, numbers and booleans bare", () => {
    const flat = hcl.replace(/\s+/g, " ");
    expect(flat).toContain('resource "hcloud_volume" "Volume" { name = "acme-data" size = 10 location = "fsn1" format = "ext4" automount = false delete_protection = true');
    expect(flat).toContain("lifecycle { prevent_destroy = true }");
    expect(flat).toContain('rule { direction = "in" protocol = "tcp" port = "22" source_ips = [ "203.0.113.4/32" ] description = "ssh" }');
    expect(flat).toContain('public_net { ipv4_enabled = true ipv4 = "${hcloud_primary_ip.Ipv4.id}" ipv6_enabled = true ipv6 = "${hcloud_primary_ip.Ipv6.id}" }');
    expect(flat).toContain('resource "hcloud_primary_ip" "Ipv4" { name = "acme-ipv4" type = "ipv4" location = "fsn1" auto_delete = false');
    expect(flat).toMatch(/labels = \{ client = "acme" managedBy = "kit" \}/);
  });

  test("references in number lists are quoted strings (cdktf 0.21 alone writes `$ {…}`, which is not HCL)", () => {
    const flat = hcl.replace(/\s+/g, " ");
    expect(flat).toContain('firewall_ids = [ "${hcloud_firewall.Firewall.id}" ]');
    expect(flat).toContain('server_ids = [ "${hcloud_server.Server.id}", "42" ]');
    expect(hcl).not.toMatch(/\$\s+\{/);
  });

  test("parses as HCL (HashiCorp's parser, offline)", async () => {
    await expect(parseHcl(hcl)).resolves.toHaveProperty("resource");
    await expect(parseHcl(hcl)).resolves.toHaveProperty("data.hcloud_ssh_key");
  });

  test("the whole Hetzner example stack parses as HCL, user data included", async () => {
    const stack = new ClientStack(scratchApp(), { env: shippedEnvironment("examplehz-prod"), agency: AGENCY });
    const stackHcl = Testing.synthHcl(stack) as string;
    expect(stackHcl).toContain('resource "hcloud_server"');
    await expect(parseHcl(stackHcl)).resolves.toHaveProperty("resource.hcloud_server");
  });
});
