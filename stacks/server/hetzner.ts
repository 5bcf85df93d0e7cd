import { DigitaloceanProvider } from "@cdktf/provider-digitalocean/lib/provider/index.js";
import { Record as DnsRecord } from "@cdktf/provider-digitalocean/lib/record/index.js";
import { Token } from "cdktf";
import { Construct } from "constructs";
import type { ResolvedEnvironment } from "../../app/config/types.ts";
import { Firewall } from "./hcloud/firewall.ts";
import { FirewallAttachment } from "./hcloud/firewall-attachment.ts";
import { PrimaryIp } from "./hcloud/primary-ip.ts";
import { HcloudProvider } from "./hcloud/provider.ts";
import { Server } from "./hcloud/server.ts";
import { DataSshKey } from "./hcloud/ssh-key.ts";
import { Volume } from "./hcloud/volume.ts";
import { VolumeAttachment } from "./hcloud/volume-attachment.ts";
import type { ProvisionedServer, ServerPlatform, ServerPlatformProps } from "./server-platform.ts";

/**
 * Where Hetzner exposes a volume inside the server: by its numeric id, which exists only once the volume
 * is created — in a stack `volumeId` is a Terraform reference, resolved at apply time.
 */
export function hetznerVolumeDevice(volumeId: string): string {
  return `/dev/disk/by-id/scsi-0HC_Volume_${volumeId}`;
}

/**
 * A server with a data volume, a firewall and primary IPv4/IPv6 addresses that outlive the server. The API
 * token comes from HCLOUD_TOKEN at deploy time; synth needs none.
 *
 * Construct ids here are part of the public contract: renaming `DataVolume` replaces the volume (data
 * loss), renaming `Ipv4`/`Ipv6` gives the server new addresses.
 */
export class HetznerServer extends Construct implements ProvisionedServer {
  readonly ipv4: string;
  readonly ipv6: string;
  /** One server: validation refuses `servers` > 1 on Hetzner (no managed PostgreSQL for more than one to share). */
  readonly ipv4s: readonly string[];
  private readonly env: ResolvedEnvironment;
  /** Hetzner labels; the kit's tags are already valid label keys and values (letters, digits, `-`). */
  private readonly labels: Readonly<Record<string, string>>;

  private readonly props: ServerPlatformProps;

  constructor(scope: Construct, id: string, props: ServerPlatformProps) {
    super(scope, id);
    this.props = props;
    this.env = props.env;
    this.labels = props.tags;
    new HcloudProvider(this, "Provider");
    const volume = this.createVolume();
    const firewall = this.createFirewall();
    const addresses = this.createPrimaryIps();
    const server = this.createServer(volume, firewall, addresses);
    this.attach(server, volume, firewall);
    this.ipv4 = addresses.ipv4.ipAddress;
    // The server's `…::1` in the primary IPv6 /64: as stable as the /64 itself.
    this.ipv6 = server.ipv6Address;
    this.ipv4s = [this.ipv4];
    this.createDnsRecords();
  }

  private createVolume(): Volume {
    return new Volume(this, "DataVolume", {
      // Derived only from stable ids: a contract (the device path uses the id, not the name).
      name: this.env.names.volume,
      location: this.env.region,
      size: this.env.volume.sizeGiB,
      format: "ext4",
      // The bootstrap mounts it (mount-volume.sh); Hetzner's automount is unreliable on recreated servers.
      automount: false,
      // Also refuse deletion from the console or API; `prevent_destroy` is what stops Terraform. The provider
      // does not lift this lock on destroy (provider issue 1206): retiring the volume takes the runbook's three
      // steps (docs/runbook.md, "Retiring an environment").
      deleteProtection: true,
      labels: this.labels,
      lifecycle: { preventDestroy: true },
    });
  }

  private createFirewall(): Firewall {
    const anywhere = ["0.0.0.0/0", "::/0"];
    return new Firewall(this, "Firewall", {
      name: this.env.names.server,
      labels: this.labels,
      // Stateful and default-deny inbound: nothing but these three ports. With no `out` rule, Hetzner
      // allows all outbound traffic (packages, git, S3, ACME, DNS, NTP).
      rule: [
        { direction: "in", protocol: "tcp", port: "22", sourceIps: [...this.env.sshAllowedCidrs], description: "SSH from the configured CIDRs" },
        { direction: "in", protocol: "tcp", port: "80", sourceIps: anywhere, description: "HTTP" },
        { direction: "in", protocol: "tcp", port: "443", sourceIps: anywhere, description: "HTTPS" },
      ],
    });
  }

  /** Primary IPs not deleted with the server: a rebuilt server gets the same addresses back. */
  private createPrimaryIps(): { ipv4: PrimaryIp; ipv6: PrimaryIp } {
    const address = (id: string, type: "ipv4" | "ipv6") =>
      new PrimaryIp(this, id, {
        name: `${this.env.names.server}-${type}`,
        type,
        location: this.env.region,
        autoDelete: false,
        labels: this.labels,
        // A new address would break the client's DNS and every allow-list that names it.
        lifecycle: { preventDestroy: true },
      });
    return { ipv4: address("Ipv4", "ipv4"), ipv6: address("Ipv6", "ipv6") };
  }

  private createServer(volume: Volume, firewall: Firewall, addresses: { ipv4: PrimaryIp; ipv6: PrimaryIp }): Server {
    const firstBoot = this.props.firstBoot(hetznerVolumeDevice(volume.id), 1);
    return new Server(this, "Server", {
      name: this.env.names.server,
      serverType: this.env.size,
      image: this.env.image,
      location: this.env.region,
      // Keys registered once in the client's Hetzner project under these names (as on DigitalOcean): the stack
      // cannot upload them, because Hetzner refuses a second copy of a key in a project, so prod and staging
      // could not both upload the same staff key. Looked up by the data source, at plan time: a key missing from
      // the project fails the plan, not the apply half-way (the provider resolves names only at create). With
      // keys, Hetzner mails no root password; cloud-init then disables root login anyway, and the deploy user's
      // keys come from the user data and every deploy.
      sshKeys: this.env.sshKeys.map((key, i) => Token.asString(new DataSshKey(this, `SshKey${i}`, { name: key.name }).id)),
      publicNet: [
        {
          ipv4Enabled: true,
          ipv4: addresses.ipv4.id,
          ipv6Enabled: true,
          ipv6: addresses.ipv6.id,
        },
      ],
      // The firewall applies before the first boot; the attachment below keeps it applied afterwards, and
      // the server ignores what it reads back (the pattern in the provider's firewall_attachment docs).
      firewallIds: [Token.asNumber(firewall.id)],
      ignoreRemoteFirewallIds: true,
      // A server_type change resizes CPU and RAM only: a grown disk is permanent (no way back to a smaller type).
      keepDisk: true,
      // Hetzner shuts the server down before deleting it, but only after Terraform detached the volume:
      // replacing a running server needs the runbook's steps first (docs/runbook.md, "Replacing a server").
      shutdownBeforeDeletion: true,
      labels: this.labels,
      userData: firstBoot.userData,
      dependsOn: firstBoot.dependsOn,
      lifecycle: {
        // A change to any of these would replace the server. cloud-init only runs at first boot anyway; later
        // configuration and the deploy user's keys are pushed over SSH by scripts/deploy.ts. The image is what
        // a new server starts from: a new default image (Debian 12 → 13) must not replace running servers; a
        // replacement the operator asks for (runbook) starts from the configured one.
        ignoreChanges: ["user_data", "ssh_keys", "image"],
      },
    });
  }

  /**
   * A/AAAA records when the client's DNS zone is hosted on DigitalOcean (`domain.digitalOceanZone`): the
   * deploy then needs DIGITALOCEAN_TOKEN besides HCLOUD_TOKEN.
   */
  private createDnsRecords(): void {
    const domain = this.env.domain;
    if (!domain?.digitalOceanZone) return;
    const zone = domain.digitalOceanZone;
    const name = domain.name === zone ? "@" : domain.name.slice(0, -(zone.length + 1));
    new DigitaloceanProvider(this, "DnsProvider", {});
    new DnsRecord(this, "DnsA", { domain: zone, type: "A", name, value: this.ipv4, ttl: 300 });
    new DnsRecord(this, "DnsAAAA", { domain: zone, type: "AAAA", name, value: this.ipv6, ttl: 300 });
  }

  private attach(server: Server, volume: Volume, firewall: Firewall): void {
    new VolumeAttachment(this, "DataVolumeAttachment", {
      volumeId: Token.asNumber(volume.id),
      serverId: Token.asNumber(server.id),
      automount: false,
    });
    new FirewallAttachment(this, "FirewallAttachment", {
      firewallId: Token.asNumber(firewall.id),
      serverIds: [Token.asNumber(server.id)],
    });
  }
}

export const hetzner: ServerPlatform = {
  create: (scope, props) => new HetznerServer(scope, "Server", props),
};
