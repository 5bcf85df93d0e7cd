import { DataDigitaloceanSshKey } from "@cdktf/provider-digitalocean/lib/data-digitalocean-ssh-key/index.js";
import { Droplet } from "@cdktf/provider-digitalocean/lib/droplet/index.js";
import { Firewall } from "@cdktf/provider-digitalocean/lib/firewall/index.js";
import { MonitorAlert } from "@cdktf/provider-digitalocean/lib/monitor-alert/index.js";
import { Project } from "@cdktf/provider-digitalocean/lib/project/index.js";
import { DigitaloceanProvider } from "@cdktf/provider-digitalocean/lib/provider/index.js";
import { Record as DnsRecord } from "@cdktf/provider-digitalocean/lib/record/index.js";
import { ReservedIp } from "@cdktf/provider-digitalocean/lib/reserved-ip/index.js";
import { ReservedIpAssignment } from "@cdktf/provider-digitalocean/lib/reserved-ip-assignment/index.js";
import { Tag } from "@cdktf/provider-digitalocean/lib/tag/index.js";
import { UptimeAlert } from "@cdktf/provider-digitalocean/lib/uptime-alert/index.js";
import { UptimeCheck } from "@cdktf/provider-digitalocean/lib/uptime-check/index.js";
import { Volume } from "@cdktf/provider-digitalocean/lib/volume/index.js";
import { VolumeAttachment } from "@cdktf/provider-digitalocean/lib/volume-attachment/index.js";
import { Token, TerraformVariable } from "cdktf";
import { Construct } from "constructs";
import type { ResolvedEnvironment } from "../../app/config/types.ts";
import { ManagedPostgres } from "../database.ts";
import { AppLoadBalancer } from "../load-balancer.ts";
import type { ProvisionedServer, ServerPlatform, ServerPlatformProps } from "./server-platform.ts";

/** Where DigitalOcean exposes a volume inside the droplet (by its name). */
export function digitalOceanVolumeDevice(volumeName: string): string {
  return `/dev/disk/by-id/scsi-0DO_Volume_${volumeName}`;
}

/** DigitalOcean tags: lowercase letters, digits, `:`, `-`, `_`. */
const doTag = (key: string, value: string) => `${key}:${value}`.toLowerCase().replace(/[^a-z0-9:_-]/g, "-");

/**
 * The data volume's description. DigitalOcean cannot change a volume's description: the provider replaces
 * the volume instead (ForceNew), which `prevent_destroy` refuses — so a new wording here would break every
 * existing client's plan. It derives from the stack's name alone (a config change cannot alter it), and the
 * volume also ignores changes to it.
 */
export const volumeDescription = (stackName: string) => `Data volume (SQLite database) of ${stackName}`;

/**
 * A droplet with a data volume, a cloud firewall, a reserved IP, optional DNS records and a project
 * grouping them. The DigitalOcean API token comes from DIGITALOCEAN_TOKEN at deploy time.
 *
 * `servers` > 1 (PostgreSQL only): droplets 2, 3, … beside the first, each as the first (the firewall's tag from its
 * creation, a volume of its own for the release directories, logs and the bootstrap's mount, a reserved IP), behind a
 * load balancer (../load-balancer.ts). Their volumes hold no data of record (the database is the cluster), so they
 * carry no `prevent_destroy`: `servers` can go down again. The first server's construct ids do not change with
 * `servers`: going from 1 to 2 adds resources and replaces none.
 *
 * Construct ids here are part of the public contract: renaming `DataVolume` replaces the volume (data loss).
 */
export class DigitalOceanServer extends Construct implements ProvisionedServer {
  readonly ipv4: string;
  readonly ipv6: string;
  readonly ipv4s: readonly string[];
  readonly loadBalancerIp?: string;
  /** The tag every app server of the environment carries from its creation (the firewall's, the load balancer's, the database's). */
  readonly serverTag: string;
  /** The environment's tags as DigitalOcean writes them. */
  readonly tags: readonly string[];
  private readonly env: ResolvedEnvironment;
  private readonly props: ServerPlatformProps;
  private readonly servers: readonly { droplet: Droplet; volume: Volume; address: ReservedIp }[];
  private readonly loadBalancer?: AppLoadBalancer;

  constructor(scope: Construct, id: string, props: ServerPlatformProps) {
    super(scope, id);
    this.props = props;
    this.env = props.env;
    new DigitaloceanProvider(this, "Provider", {});
    this.tags = Object.entries(props.tags).map(([k, v]) => doTag(k, v));
    const tag = new Tag(this, "FirewallTag", { name: doTag("firewall", this.env.names.server) });
    this.serverTag = tag.name;
    if (this.env.servers > 1) this.loadBalancer = new AppLoadBalancer(this, "LoadBalancer", { env: this.env, serverTag: tag.name });
    const firewall = this.createFirewall(tag);
    const sshKeys = this.env.sshKeys.map((key, i) => Token.asString(new DataDigitaloceanSshKey(this, `SshKey${i}`, { name: key.name }).id));
    this.servers = Array.from({ length: this.env.servers }, (_, i) => this.createServer(i + 1, firewall, sshKeys));
    const [first] = this.servers;
    this.ipv4 = first.address.ipAddress;
    this.ipv6 = first.droplet.ipv6Address;
    this.ipv4s = this.servers.map((server) => server.address.ipAddress);
    this.loadBalancerIp = this.loadBalancer?.resource.ip;
    this.createDnsRecords();
    this.createAlerts(this.servers.map((server) => server.droplet), first.address);
  }

  /**
   * Groups the environment's resources in a DigitalOcean project; `extra`: URNs made beside the server (the database
   * cluster). Called once, after them.
   */
  createProject(extra: readonly string[] = []): void {
    const urns = this.servers.flatMap(({ droplet, volume, address }) => [droplet.urn, volume.urn, address.urn]);
    new Project(this, "Project", {
      name: this.env.names.server,
      description: `${this.env.client} ${this.env.environment} (managed by the kit)`,
      purpose: "Web Application",
      environment: this.env.environment === "prod" ? "Production" : this.env.environment === "staging" ? "Staging" : "Development",
      resources: [...urns, ...(this.loadBalancer ? [this.loadBalancer.resource.urn] : []), ...extra],
    });
  }

  /** Server `n` (1 for the first): its construct ids and names carry the number from 2 on. */
  private createServer(n: number, firewall: Firewall, sshKeys: string[]): { droplet: Droplet; volume: Volume; address: ReservedIp } {
    const suffix = n === 1 ? "" : String(n);
    const volumeName = n === 1 ? this.env.names.volume : `${this.env.names.volume}-${n}`;
    const volume = this.createVolume(suffix, volumeName, n === 1 ? volumeDescription(this.env.stackName) : `Volume of ${this.env.stackName}, server ${n} (no data of record)`, n === 1);
    const droplet = this.createDroplet(n, suffix, volume, volumeName, firewall, sshKeys);
    const address = this.createReservedIp(suffix, droplet);
    return { droplet, volume, address };
  }

  private createVolume(suffix: string, name: string, description: string, ofRecord: boolean): Volume {
    return new Volume(this, `DataVolume${suffix}`, {
      // The name is the device name inside the droplet and derives only from stable ids: a contract.
      name,
      region: this.env.region,
      size: this.env.volume.sizeGiB,
      initialFilesystemType: "ext4",
      description,
      // name, region and initial_filesystem_type replace the volume too: each derives from stable ids or is constant.
      lifecycle: { preventDestroy: ofRecord, ignoreChanges: ["description"] },
    });
  }

  /**
   * The droplet carries the firewall's tag from its creation and is created only once the firewall exists
   * (depends_on), so the firewall covers it from its first second — also a replacement droplet. (A firewall
   * bound by `droplet_ids` applies only after the droplet exists: it would boot with SSH open to the world.)
   */
  private createDroplet(n: number, suffix: string, volume: Volume, volumeName: string, firewall: Firewall, sshKeys: string[]): Droplet {
    const firstBoot = this.props.firstBoot(digitalOceanVolumeDevice(volumeName), n);
    const droplet = new Droplet(this, `Droplet${suffix}`, {
      name: n === 1 ? this.env.names.server : `${this.env.names.server}-${n}`,
      region: this.env.region,
      size: this.env.size,
      image: this.env.image,
      monitoring: true,
      ipv6: true,
      gracefulShutdown: true,
      // A size change resizes CPU and RAM only: a grown disk could never shrink again, so the droplet could
      // never go back to a smaller size. The data lives on the volume.
      resizeDisk: false,
      sshKeys,
      tags: [...this.tags, this.serverTag],
      userData: firstBoot.userData,
      dependsOn: [firewall, ...firstBoot.dependsOn],
      lifecycle: {
        // A change to any of these would replace the droplet (ForceNew). cloud-init only runs at first boot anyway;
        // later configuration, and the deploy user's keys (/etc/ssh/authorized_keys/deploy), are pushed over SSH
        // by scripts/deploy.ts. The keys here only reach root, whose login cloud-init turns off. The image is
        // what a new droplet starts from: a kit upgrade that changes the default image (Debian 12 → 13) must not
        // replace running droplets; a replacement the operator asks for (runbook) starts from the configured one.
        ignoreChanges: ["user_data", "ssh_keys", "image"],
      },
    });
    new VolumeAttachment(this, `DataVolumeAttachment${suffix}`, {
      dropletId: Token.asNumber(droplet.id),
      volumeId: volume.id,
    });
    return droplet;
  }

  /**
   * The firewall, bound by the per-stack tag (the tag exists before the droplets, which carry it). Web traffic: from
   * anywhere to a single server; from the load balancer only, port 80 only, behind one (it terminates TLS).
   */
  private createFirewall(tag: Tag): Firewall {
    const anywhere = ["0.0.0.0/0", "::/0"];
    const web = this.loadBalancer
      ? [{ protocol: "tcp", portRange: "80", sourceLoadBalancerUids: [this.loadBalancer.resource.id] }]
      : [
          { protocol: "tcp", portRange: "80", sourceAddresses: anywhere },
          { protocol: "tcp", portRange: "443", sourceAddresses: anywhere },
        ];
    return new Firewall(this, "Firewall", {
      name: this.env.names.server,
      tags: [tag.name],
      // Stateful and default-deny: nothing inbound but SSH and the web ports.
      inboundRule: [{ protocol: "tcp", portRange: "22", sourceAddresses: [...this.env.sshAllowedCidrs] }, ...web],
      // Outbound: packages, git, S3, ACME (Let's Encrypt), DNS, NTP, the managed database.
      outboundRule: [
        { protocol: "tcp", portRange: "1-65535", destinationAddresses: anywhere },
        { protocol: "udp", portRange: "1-65535", destinationAddresses: anywhere },
        { protocol: "icmp", destinationAddresses: anywhere },
      ],
    });
  }

  private createReservedIp(suffix: string, droplet: Droplet): ReservedIp {
    const address = new ReservedIp(this, `ReservedIp${suffix}`, { region: this.env.region });
    new ReservedIpAssignment(this, `ReservedIpAssignment${suffix}`, {
      ipAddress: address.ipAddress,
      dropletId: Token.asNumber(droplet.id),
    });
    return address;
  }

  private createDnsRecords(): void {
    const domain = this.env.domain;
    if (!domain?.digitalOceanZone) return;
    const zone = domain.digitalOceanZone;
    const name = domain.name === zone ? "@" : domain.name.slice(0, -(zone.length + 1));
    // Behind a load balancer the name is the balancer's, IPv4 only (provider 2.71 exports no IPv6 of a load balancer).
    new DnsRecord(this, "DnsA", { domain: zone, type: "A", name, value: this.loadBalancerIp ?? this.ipv4, ttl: 300 });
    if (!this.loadBalancerIp) new DnsRecord(this, "DnsAAAA", { domain: zone, type: "AAAA", name, value: this.ipv6, ttl: 300 });
  }

  /**
   * DigitalOcean's own alerts, beside the watcher on the server (which also sees replication, backups and the
   * volume). Monitor alerts read the metrics agent (`monitoring: true`); the uptime check probes the health URL
   * from outside, so it also notices what the server cannot report: the droplet down, its network, DNS, the
   * certificate. Nothing is created without a recipient (alerts.emails / alerts.slackChannel).
   */
  private createAlerts(droplets: readonly Droplet[], address: ReservedIp): void {
    const recipients = this.alertRecipients();
    if (!recipients) return;
    const stack = this.env.stackName;
    const entities = droplets.map((droplet) => droplet.id);
    for (const metric of DROPLET_ALERTS) {
      new MonitorAlert(this, metric.id, {
        type: metric.type,
        compare: "GreaterThan",
        value: metric.percent,
        window: metric.window,
        entities,
        description: `${stack}: ${metric.what} above ${metric.percent} % for ${metric.window}`,
        enabled: true,
        alerts: recipients,
      });
    }

    // With a domain, the URL users reach (and Caddy's certificate); without one, Caddy serves plain HTTP on the
    // reserved IP, which the firewall opens to the world (behind a load balancer: on the balancer's): the check probes that.
    const domain = this.env.domain?.name;
    const scheme = domain ? "https" : "http";
    const check = new UptimeCheck(this, "UptimeCheck", {
      name: `${stack} health`,
      type: scheme,
      target: `${scheme}://${domain ?? this.loadBalancerIp ?? address.ipAddress}${this.env.app.healthPath}`,
      regions: UPTIME_REGIONS,
      enabled: true,
    });
    const notifications = [recipients];
    const uptimeAlert = (id: string, config: { type: string; name: string; comparison: string; threshold: number; period: string }) =>
      new UptimeAlert(this, id, { checkId: check.id, notifications, ...config });
    // Down from every probe region for 2 minutes (the shortest period): one region's network trouble is not the server's.
    uptimeAlert("UptimeDown", { type: "down_global", name: `${stack}: health URL down`, comparison: "less_than", threshold: 1, period: "2m" });
    // The health path answers from memory in milliseconds; 2 s for 5 minutes from afar means a saturated server.
    uptimeAlert("UptimeLatency", { type: "latency", name: `${stack}: health URL slower than 2 s`, comparison: "greater_than", threshold: 2000, period: "5m" });
    if (domain) {
      // Caddy renews 30 days before expiry: 14 days left means renewal has failed for two weeks.
      uptimeAlert("UptimeSslExpiry", { type: "ssl_expiry", name: `${stack}: certificate expires within 14 days`, comparison: "less_than", threshold: 14, period: "5m" });
    }
  }

  /**
   * Where DigitalOcean sends its alerts; undefined when nobody would receive them. The Slack webhook URL grants
   * posting to the channel: a sensitive variable, so it never appears in the synthesized Terraform.
   */
  private alertRecipients(): { email?: string[]; slack?: { channel: string; url: string }[] } | undefined {
    const { emails, slackChannel } = this.env.alerts;
    if (emails.length === 0 && !slackChannel) return undefined;
    const recipients: { email?: string[]; slack?: { channel: string; url: string }[] } = {};
    if (emails.length > 0) recipients.email = [...emails];
    if (slackChannel) {
      const url = new TerraformVariable(this, "AlertSlackWebhookUrl", {
        type: "string",
        sensitive: true,
        nullable: false,
        description: `Slack incoming-webhook URL for DigitalOcean's alerts to ${slackChannel} (set TF_VAR_${SLACK_URL_VARIABLE}).`,
        validation: [
          {
            condition: `\${can(regex("^https://hooks\\\\.slack\\\\.com/\\\\S+$", var.${SLACK_URL_VARIABLE}))}`,
            errorMessage: "The Slack webhook URL must be an https://hooks.slack.com/… incoming-webhook URL.",
          },
        ],
      });
      // The name users set TF_VAR_ for: stable, not derived from the construct path.
      url.overrideLogicalId(SLACK_URL_VARIABLE);
      recipients.slack = [{ channel: slackChannel, url: url.stringValue }];
    }
    return recipients;
  }
}

/** The sensitive variable holding the Slack webhook URL of alerts.slackChannel. */
export const SLACK_URL_VARIABLE = "alert_slack_webhook_url";

/**
 * The droplet's monitor alerts (DigitalOcean's windows: 5m, 10m, 30m, 1h). CPU and memory wait 10 minutes: a deploy,
 * the fallback backup or the restore drill saturates a 1-vCPU droplet for a minute or two, and that is no news.
 * The root disk matches the watcher's warning (80 %) at the shortest window: it does not recover by itself.
 * (DigitalOcean's disk metric is the root disk only; the volume is the watcher's.)
 */
const DROPLET_ALERTS = [
  { id: "AlertCpu", type: "v1/insights/droplet/cpu", what: "CPU", percent: 90, window: "10m" },
  { id: "AlertMemory", type: "v1/insights/droplet/memory_utilization_percent", what: "memory use", percent: 90, window: "10m" },
  { id: "AlertRootDisk", type: "v1/insights/droplet/disk_utilization_percent", what: "root disk use", percent: 80, window: "5m" },
] as const;

/** Every region DigitalOcean probes from, so that "down everywhere" means the server, not one path to it. */
const UPTIME_REGIONS = ["us_east", "us_west", "eu_west", "se_asia"];

export const digitalOcean: ServerPlatform = {
  create: (scope, props) => {
    const server = new DigitalOceanServer(scope, "Server", props);
    const database = props.env.database.engine === "postgres" ? new ManagedPostgres(scope, "Database", { env: props.env, tags: server.tags, serverTag: server.serverTag }) : undefined;
    server.createProject(database ? [database.cluster.urn] : []);
    return {
      ipv4: server.ipv4,
      ipv6: server.ipv6,
      ipv4s: server.ipv4s,
      loadBalancerIp: server.loadBalancerIp,
      database: database && { url: database.url, drillUrl: database.drillUrl, adminUrl: database.adminUrl, caCertificate: database.caCertificate },
    };
  },
};
