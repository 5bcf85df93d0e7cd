import type { ProviderName } from "./types.ts";

/**
 * What validation and the README need to know about each VPS provider. Lists are deliberately short:
 * a value outside them fails synth with the list in the message, and adding one is a one-line change.
 */
export interface ProviderFacts {
  readonly name: ProviderName;
  /** Display name for messages. */
  readonly title: string;
  readonly regions: readonly string[];
  /** Server sizes the kit accepts, with their list price per month (USD or EUR as `currency` says). */
  readonly sizes: Readonly<Record<string, number>>;
  readonly defaultSize: string;
  /**
   * Images the bootstrap is proven on: the e2e tier boots each as a debootstrapped root filesystem of the
   * same Debian release (lab/harness/rootfs.ts: Debian 13 in debian-13.e2e.test.ts, Debian 12 in the rest).
   */
  readonly images: readonly string[];
  readonly defaultImage: string;
  readonly currency: "USD" | "EUR";
  /** Block storage price per GiB-month. */
  readonly volumePricePerGiB: number;
  /** Extra monthly price of the stable address, if any. */
  readonly addressPrice: number;
  /** Smallest and largest data volume the provider creates, in GiB. */
  readonly volumeSizeGiB: { readonly min: number; readonly max: number };
  /** Sizes offered only in some regions. @default - every size in every region */
  readonly sizeRegions?: Readonly<Record<string, readonly string[]>>;
  /** The provider's managed PostgreSQL (`database.engine: "postgres"`). @default - none: the provider has no managed PostgreSQL */
  readonly managedPostgres?: ManagedPostgresFacts;
  /** Monthly list price of the load balancer in front of `servers` > 1. @default - no load balancer offered by the kit */
  readonly loadBalancerPrice?: number;
}

/** A provider's managed PostgreSQL clusters as the kit offers them: one node, the sizes and versions below. */
export interface ManagedPostgresFacts {
  /** Cluster sizes (one node) with their monthly list price, smallest first. */
  readonly sizes: Readonly<Record<string, number>>;
  readonly defaultSize: string;
  /** Major versions accepted; the default is pinned (a new default is a deliberate change, never the provider's latest). */
  readonly versions: readonly string[];
  readonly defaultVersion: string;
}

/**
 * DigitalOcean Managed PostgreSQL, one node ("Basic"), from the pricing page (2026; re-check before quoting): the
 * smallest, 1 vCPU / 1 GiB RAM / 10 GiB disk, is $15 a month. Version 17 is pinned: Debian 13's postgresql-client is
 * 17, and pg_dump refuses a server of a newer major than itself.
 */
export const DIGITALOCEAN_POSTGRES: ManagedPostgresFacts = {
  sizes: { "db-s-1vcpu-1gb": 15, "db-s-1vcpu-2gb": 30, "db-s-2vcpu-4gb": 60, "db-s-4vcpu-8gb": 120 },
  defaultSize: "db-s-1vcpu-1gb",
  versions: ["14", "15", "16", "17"],
  defaultVersion: "17",
};

/** DigitalOcean, from the provider's docs and the pricing page (2026). Reserved IPs are free while assigned. */
export const DIGITALOCEAN: ProviderFacts = {
  name: "digitalocean",
  title: "DigitalOcean",
  regions: ["nyc1", "nyc3", "sfo2", "sfo3", "tor1", "atl1", "ams3", "fra1", "lon1", "sgp1", "blr1", "syd1"],
  sizes: {
    "s-1vcpu-512mb-10gb": 4,
    "s-1vcpu-1gb": 6,
    "s-1vcpu-2gb": 12,
    "s-2vcpu-2gb": 18,
    "s-2vcpu-4gb": 24,
    "s-4vcpu-8gb": 48,
  },
  defaultSize: "s-1vcpu-1gb",
  // Debian 13 (trixie) is Debian's stable release; Debian 12 (oldstable) stays supported for existing servers.
  images: ["debian-13-x64", "debian-12-x64"],
  defaultImage: "debian-13-x64",
  currency: "USD",
  volumePricePerGiB: 0.1,
  addressPrice: 0,
  volumeSizeGiB: { min: 1, max: 16384 },
  managedPostgres: DIGITALOCEAN_POSTGRES,
  // A regional load balancer of one node ($12 a month), for servers > 1.
  loadBalancerPrice: 12,
};

const HETZNER_EU = ["fsn1", "nbg1", "hel1"];

/**
 * Hetzner Cloud (hcloud provider 1.68 docs; prices in EUR excluding VAT, after Hetzner's 1 April 2026
 * adjustment — re-check before quoting). Only x86 types: the bootstrap installs linux-x64 builds of Deno and
 * Litestream, so the Arm types (cax*) would not boot. CX22 is retired; CX23 replaced it.
 *   cx23 €3.99, cx33 €6.49: monthly prices reported for servers billed in April 2026.
 *   cx43, cpx22, cpx32: ≈ their hourly rates (€0.021, €0.008, €0.016) × Hetzner's ~624-hour monthly cap.
 * The primary IPv4 is billed separately (€0.50/month); the primary IPv6 is free. Volumes €0.044/GB-month.
 */
export const HETZNER: ProviderFacts = {
  name: "hetzner",
  title: "Hetzner Cloud",
  regions: ["fsn1", "nbg1", "hel1", "ash", "hil", "sin"],
  sizes: {
    cx23: 3.99,
    cx33: 6.49,
    cx43: 13,
    cpx22: 5,
    cpx32: 10,
  },
  defaultSize: "cx23",
  images: ["debian-13", "debian-12"],
  defaultImage: "debian-13",
  currency: "EUR",
  volumePricePerGiB: 0.044,
  addressPrice: 0.5,
  volumeSizeGiB: { min: 10, max: 10240 },
  // The cost-optimized CX line is sold in the EU locations only.
  sizeRegions: { cx23: HETZNER_EU, cx33: HETZNER_EU, cx43: HETZNER_EU },
};

/** Every provider the kit supports, by config name. */
export const PROVIDERS: Readonly<Partial<Record<ProviderName, ProviderFacts>>> = {
  digitalocean: DIGITALOCEAN,
  hetzner: HETZNER,
};

/** AWS regions accepted for the backup bucket. */
export const AWS_REGIONS = [
  "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1",
  "eu-central-1", "eu-central-2", "eu-west-1", "eu-west-2", "eu-west-3", "eu-north-1", "eu-south-1", "eu-south-2",
  "ap-south-1", "ap-southeast-1", "ap-southeast-2", "ap-northeast-1", "ap-northeast-2", "sa-east-1",
] as const;
