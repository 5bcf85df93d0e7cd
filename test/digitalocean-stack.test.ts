/**
 * What the DigitalOcean + S3 stack guarantees. Snapshots record the whole synthesized Terraform; the named
 * tests below assert what matters for security and data, named after the scanner checks they mirror.
 */
import { OBJECT_ACTIONS } from "../stacks/backup-bucket.ts";
import { SLACK_URL_VARIABLE, volumeDescription } from "../stacks/server/digitalocean.ts";
import { shippedEnvironment, shippedEnvironments } from "../lab/environments.ts";
import { parseHcl } from "./support/hcl.ts";
import { readableSnapshot, type SynthesizedStack, synthesize } from "./support/synth.ts";

describe("every shipped DigitalOcean client stack (Hetzner's: test/hetzner-stack.test.ts)", () => {
  const digitalOceanEnvs = shippedEnvironments().filter((env) => env.provider === "digitalocean");
  test.each(digitalOceanEnvs.map((env) => [env.stackName, env] as const))("%s matches its snapshot", (_name, env) => {
    const { json } = synthesize(env);
    expect(readableSnapshot(json)).toMatchSnapshot();
    // The readable form hides nothing: it differs from the stack only where the bundle was decoded.
    expect(JSON.stringify(readableSnapshot(json))).toContain("put /usr/local/lib/kit/bootstrap.sh 0755");
  });
});

describe("example-prod (DigitalOcean)", () => {
  let stack: SynthesizedStack;
  const env = shippedEnvironment("example-prod");
  const bucketArn = `arn:aws:s3:::${env.names.bucket}`;
  beforeAll(() => {
    stack = synthesize(env);
  });

  describe("data is never destroyed by Terraform", () => {
    test("the data volume has prevent_destroy, is ext4, and is named from stable ids only", () => {
      expect(stack.resource("digitalocean_volume")).toMatchObject({
        name: "pixelco-example-prod-data",
        initial_filesystem_type: "ext4",
        size: 10,
        region: "fra1",
        lifecycle: { prevent_destroy: true },
      });
    });

    test("the backup bucket has prevent_destroy and is never force-destroyed", () => {
      expect(stack.resource("aws_s3_bucket")).toMatchObject({
        bucket: "pixelco-example-prod-backups",
        force_destroy: false,
        lifecycle: { prevent_destroy: true },
      });
    });

    test("droplet ignores user_data, ssh_keys and image changes (each would replace it; keys reach the server by deploy, an image only new droplets)", () => {
      // Adding a staff key to the client file must not replace the client's server on the next cdktf deploy.
      // That the deploy pushes every key: test/provider-hazards.test.ts.
      expect(stack.resource("digitalocean_droplet").lifecycle).toEqual({ ignore_changes: ["user_data", "ssh_keys", "image"] });
    });

    test("the volume's description never changes: fixed per stack, ignored by Terraform (it would replace the volume)", () => {
      const volume = stack.resource("digitalocean_volume");
      expect(volume.description).toBe(volumeDescription("example-prod"));
      expect(volume.description).toBe("Data volume (SQLite database) of example-prod");
      expect(volume.lifecycle).toEqual({ prevent_destroy: true, ignore_changes: ["description"] });
      // No config field reaches it: changing every field a client changes leaves it as it was.
      const changed = synthesize({
        ...env,
        size: "s-2vcpu-4gb",
        volume: { sizeGiB: 50 },
        sshKeys: [...env.sshKeys, { name: "joe", publicKey: env.sshKeys[0].publicKey }],
        app: { ...env.app, repo: "https://github.com/agency/other.git", port: 8100 },
        domain: undefined,
        backups: { ...env.backups, noncurrentVersionDays: 90 },
      });
      expect(changed.resource("digitalocean_volume").description).toBe(volume.description);
      expect(changed.resource("digitalocean_volume").size).toBe(50);
    });

    test("a size change resizes CPU and RAM only (resize_disk false: a grown disk is permanent)", () => {
      expect(stack.resource("digitalocean_droplet").resize_disk).toBe(false);
    });

    test("the volume is attached with a volume_attachment, not the droplet's volume_ids", () => {
      expect(stack.resource("digitalocean_droplet").volume_ids).toBeUndefined();
      expect(stack.resource("digitalocean_volume_attachment")).toMatchObject({
        droplet_id: expect.stringContaining("digitalocean_droplet."),
        volume_id: expect.stringContaining("digitalocean_volume."),
      });
    });
  });

  describe("server", () => {
    test("droplet: monitoring, IPv6, tags, Debian 13 (the default image), configured size and region", () => {
      expect(stack.resource("digitalocean_droplet")).toMatchObject({
        name: "pixelco-example-prod",
        image: "debian-13-x64",
        size: "s-1vcpu-1gb",
        region: "fra1",
        monitoring: true,
        ipv6: true,
        tags: expect.arrayContaining(["client:example", "environment:prod", "managedby:kit"]),
      });
    });

    test("the droplet's first boot mounts the volume by its DigitalOcean device path", () => {
      // volume.env holds no Terraform reference on DigitalOcean, so it travels in the first-boot bundle object.
      expect(readableSnapshot(stack.json).resource.aws_s3_object).toEqual({
        [Object.keys(stack.json.resource.aws_s3_object)[0]]: expect.objectContaining({
          content_base64: expect.stringMatching(/^VOLUME_DEVICE=\/dev\/disk\/by-id\/scsi-0DO_Volume_pixelco-example-prod-data$/m),
        }),
      });
    });

    test("the droplet is created after its first-boot bundle object, which its user data names with its sha256", () => {
      const object = stack.resource("aws_s3_object");
      const sha256 = /^prod\/kit\/first-boot\/([0-9a-f]{64})\.sh\.gz$/.exec(object.key)?.[1];
      expect(sha256).toBeDefined();
      const droplet = stack.resource("digitalocean_droplet");
      expect(droplet.depends_on).toContain(`aws_s3_object.${Object.keys(stack.json.resource.aws_s3_object)[0]}`);
      expect(droplet.user_data).toMatch(new RegExp(`^ +want=${sha256}$`, "m"));
      expect(droplet.user_data).not.toContain("H4sI");
    });

    test("secrets reach the user data only as Terraform references, base64-encoded", () => {
      const userData: string = stack.resource("digitalocean_droplet").user_data;
      expect(userData).toContain("${base64encode(\"AWS_ACCESS_KEY_ID='${aws_iam_access_key.");
      expect(userData).toContain("${var.secret_SESSION_SECRET}");
      expect(stack.json.variable.secret_SESSION_SECRET).toMatchObject({ sensitive: true, nullable: false, type: "string" });
    });

    test("a reserved IP is assigned to the droplet (the address survives a rebuild)", () => {
      expect(stack.resource("digitalocean_reserved_ip")).toMatchObject({ region: "fra1" });
      expect(stack.resource("digitalocean_reserved_ip_assignment")).toMatchObject({
        ip_address: expect.stringContaining("digitalocean_reserved_ip."),
        droplet_id: expect.stringContaining("digitalocean_droplet."),
      });
    });

    test("DNS A/AAAA records point the domain at the reserved IP and the droplet's IPv6", () => {
      const records = stack.resources("digitalocean_record");
      expect(records).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ domain: "example-client.com", name: "app", type: "A", value: expect.stringContaining("digitalocean_reserved_ip.") }),
          expect.objectContaining({ domain: "example-client.com", name: "app", type: "AAAA", value: expect.stringContaining(".ipv6_address") }),
        ]),
      );
    });

    test("a project groups the droplet, the volume and the reserved IP", () => {
      const resources: string[] = stack.resource("digitalocean_project").resources;
      expect(resources).toHaveLength(3);
      expect(resources.join(" ")).toMatch(/digitalocean_droplet\..*urn.*digitalocean_volume\..*urn.*digitalocean_reserved_ip\..*urn/);
    });

    test("SSH keys are the account's keys looked up by name (DigitalOcean rejects duplicate key uploads)", () => {
      expect(Object.values(stack.json.data.digitalocean_ssh_key)).toEqual([{ name: "jane" }]);
    });
  });

  describe("firewall (AVD-DIG-0001/0003 waived for 80/443 only)", () => {
    test("inbound: SSH only from the configured CIDRs, 80/443 from anywhere, nothing else", () => {
      const firewall = stack.resource("digitalocean_firewall");
      expect(firewall.inbound_rule).toEqual([
        { protocol: "tcp", port_range: "22", source_addresses: ["203.0.113.10/32", "2001:db8:1234::/48"] },
        { protocol: "tcp", port_range: "80", source_addresses: ["0.0.0.0/0", "::/0"] },
        { protocol: "tcp", port_range: "443", source_addresses: ["0.0.0.0/0", "::/0"] },
      ]);
    });

    test("bound to a per-stack tag that exists before the droplet: the droplet carries it from creation", () => {
      const firewall = stack.resource("digitalocean_firewall");
      const droplet = stack.resource("digitalocean_droplet");
      const [tagId] = Object.keys(stack.json.resource.digitalocean_tag);
      expect(stack.resource("digitalocean_tag")).toMatchObject({ name: "firewall:pixelco-example-prod" });
      // By tag, not droplet_ids: a droplet_ids binding applies only once the droplet exists, so a new or
      // replacement droplet would boot with SSH open to the internet until then.
      expect(firewall.droplet_ids).toBeUndefined();
      expect(firewall.tags).toEqual([`\${digitalocean_tag.${tagId}.name}`]);
      expect(droplet.tags).toContain(`\${digitalocean_tag.${tagId}.name}`);
      // The firewall is created first (it needs nothing of the droplet), and the droplet waits for it.
      expect(JSON.stringify(firewall)).not.toContain("digitalocean_droplet");
      expect(droplet.depends_on).toContain(`digitalocean_firewall.${Object.keys(stack.json.resource.digitalocean_firewall)[0]}`);
    });
  });

  describe("backup bucket", () => {
    test("CKV2_AWS_6 / S3.1 / S3.8: all four public access block settings", () => {
      expect(stack.resource("aws_s3_bucket_public_access_block")).toMatchObject({
        block_public_acls: true,
        block_public_policy: true,
        ignore_public_acls: true,
        restrict_public_buckets: true,
      });
    });

    test("CKV_AWS_21 / AVD-AWS-0090: versioning enabled", () => {
      expect(stack.resource("aws_s3_bucket_versioning").versioning_configuration).toEqual({ status: "Enabled" });
    });

    test("CKV_AWS_19: default encryption at rest", () => {
      expect(stack.resource("aws_s3_bucket_server_side_encryption_configuration").rule).toEqual([
        { apply_server_side_encryption_by_default: { sse_algorithm: "AES256" } },
      ]);
    });

    test("S3.12: ACLs disabled (BucketOwnerEnforced)", () => {
      expect(stack.resource("aws_s3_bucket_ownership_controls").rule).toEqual({ object_ownership: "BucketOwnerEnforced" });
    });

    test("CKV2_AWS_61 / S3.10 / S3.13: noncurrent versions expire, incomplete uploads abort after 7 days", () => {
      const rules = stack.resource("aws_s3_bucket_lifecycle_configuration").rule;
      expect(rules).toContainEqual(
        expect.objectContaining({
          status: "Enabled",
          noncurrent_version_expiration: [{ noncurrent_days: 30 }],
          abort_incomplete_multipart_upload: [{ days_after_initiation: 7 }],
        }),
      );
      expect(rules).toContainEqual(expect.objectContaining({ filter: [{ prefix: "prod/fallback/" }], expiration: [{ days: 7 }] }));
    });

    test("Security Hub S3.5: the bucket policy denies every request without TLS", () => {
      const policy = JSON.parse(stack.resource("aws_s3_bucket_policy").policy);
      expect(policy.Statement).toEqual([
        {
          Sid: "DenyInsecureTransport",
          Effect: "Deny",
          Principal: "*",
          Action: "s3:*",
          Resource: [bucketArn, `${bucketArn}/*`],
          Condition: { Bool: { "aws:SecureTransport": "false" } },
        },
      ]);
    });
  });

  describe("backup IAM user (Security Hub IAM.2 waived: a VPS outside AWS needs long-lived keys)", () => {
    test("is allowed exactly GetBucketLocation, ListBucket on its prefix, and Get/Put/DeleteObject under <bucket>/prod/*", () => {
      const policy = JSON.parse(stack.resource("aws_iam_user_policy").policy);
      expect(policy.Statement).toEqual([
        { Sid: "FindTheBucket", Effect: "Allow", Action: ["s3:GetBucketLocation"], Resource: bucketArn },
        {
          Sid: "ListThisEnvironmentOnly",
          Effect: "Allow",
          Action: ["s3:ListBucket"],
          Resource: bucketArn,
          Condition: { StringLike: { "s3:prefix": ["prod", "prod/*"] } },
        },
        { Sid: "ReadWriteThisEnvironmentOnly", Effect: "Allow", Action: [...OBJECT_ACTIONS], Resource: `${bucketArn}/prod/*` },
      ]);
      expect(OBJECT_ACTIONS).toEqual(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]);
    });

    test("one user per environment, with one access key", () => {
      expect(stack.resource("aws_iam_user").name).toBe("pixelco-example-prod-backup");
      expect(stack.resource("aws_iam_access_key").user).toContain("aws_iam_user.");
    });
  });

  describe("outputs", () => {
    test("addresses, SSH user, bucket, region, replica path and key id; the secret only as sensitive", () => {
      const outputs = stack.json.output;
      expect(Object.keys(outputs).sort()).toEqual(
        ["access_key_id", "access_keys", "app_port", "bucket", "ipv4", "ipv6", "region", "replica_path", "replica_url", "secret_access_key", "server_ipv4s", "ssh_user", "volume_size_gib"].sort(),
      );
      expect(outputs.server_ipv4s.value).toEqual([outputs.ipv4.value]);
      expect(outputs.secret_access_key.sensitive).toBe(true);
      expect(Object.entries(outputs).filter(([, o]: [string, any]) => o.sensitive).map(([k]) => k)).toEqual(["secret_access_key"]);
      expect(outputs.replica_path.value).toBe("prod/litestream");
      expect(outputs.ssh_user.value).toBe("deploy");
    });
  });

  describe("state", () => {
    test("local by default (gitignored), one file per stack", () => {
      expect(stack.json.terraform.backend).toEqual({ local: { path: "../../../terraform.example-prod.tfstate" } });
    });

    test("S3 backend with encryption and S3-native locking when the agency names one", () => {
      const remote = synthesize(env, { namePrefix: "pixelco", stateBackend: { type: "s3", bucket: "pixelco-tfstate", region: "eu-central-1" } });
      expect(remote.json.terraform.backend).toEqual({
        s3: { bucket: "pixelco-tfstate", region: "eu-central-1", key: "pixelco/example-prod.tfstate", encrypt: true, use_lockfile: true },
      });
    });
  });
});

describe("user data as a Terraform template", () => {
  test("a literal ${ or %{ (shell, systemd, an env value) is escaped; cdktf's references are not", async () => {
    const base = shippedEnvironment("example-staging");
    const env = { ...base, app: { ...base.app, env: { GREETING: "${HOME} and %{x}" } } };
    const stack = synthesize(env);
    const userData: string = stack.resource("digitalocean_droplet").user_data;
    // The app's env travels gzip'd in the bundle (no template syntax can reach Terraform from there) and
    // lands as written; what travels as text, like the secrets' references, stays a reference.
    expect(JSON.stringify(readableSnapshot(stack.json))).toContain("GREETING='${HOME} and %{x}'");
    expect(userData).not.toContain("GREETING");
    expect(userData).toContain("${base64encode(");
    // HashiCorp's parser accepts it as a template (a heredoc is a template without escapes, like a
    // decoded JSON string), and it does reject the unescaped form.
    const asTemplate = (text: string) => parseHcl(`x = <<EOT_USER_DATA\n${text}\nEOT_USER_DATA\n`);
    await expect(asTemplate(userData)).resolves.toHaveProperty("x");
    await expect(asTemplate("GREETING='${HOME:-/root}'")).rejects.toThrow("Extra characters after interpolation expression");
  });
});

describe("example-staging", () => {
  test("no domain: no DNS records; its own bucket, volume and user", () => {
    const stack = synthesize(shippedEnvironment("example-staging"));
    expect(stack.resources("digitalocean_record")).toEqual([]);
    expect(stack.resource("aws_s3_bucket").bucket).toBe("pixelco-example-staging-backups");
    expect(stack.resource("digitalocean_volume").name).toBe("pixelco-example-staging-data");
    expect(JSON.parse(stack.resource("aws_iam_user_policy").policy).Statement[2].Resource).toBe(
      "arn:aws:s3:::pixelco-example-staging-backups/staging/*",
    );
  });
});

describe("DigitalOcean's own alerts (alerts.emails, alerts.slackChannel)", () => {
  const prod = shippedEnvironment("example-prod");
  const slackUrl = "https://hooks.slack.com/services/T0KIT/B0KIT/notInTheStack";
  let stack: SynthesizedStack;
  beforeAll(() => {
    stack = synthesize(prod);
  });
  const ref = (type: string) => expect.stringMatching(new RegExp(`^\\$\\{${type}\\.[A-Za-z0-9_]+\\.id\\}$`));

  test("monitor alerts on the droplet's CPU (> 90 % for 10m), memory (> 90 % for 10m) and root disk (> 80 % for 5m)", () => {
    const alerts = stack.resources("digitalocean_monitor_alert");
    const shape = (a: Record<string, any>) => ({ type: a.type, compare: a.compare, value: a.value, window: a.window });
    expect(alerts.map(shape)).toEqual([
      { type: "v1/insights/droplet/cpu", compare: "GreaterThan", value: 90, window: "10m" },
      { type: "v1/insights/droplet/memory_utilization_percent", compare: "GreaterThan", value: 90, window: "10m" },
      { type: "v1/insights/droplet/disk_utilization_percent", compare: "GreaterThan", value: 80, window: "5m" },
    ]);
    for (const alert of alerts) {
      // Bound to this stack's droplet only, enabled, and sent to the client file's addresses.
      expect(alert.entities).toEqual([ref("digitalocean_droplet")]);
      expect(alert.enabled).toBe(true);
      expect(alert.alerts).toEqual({ email: ["ops@pixelco.example"] });
      expect(alert.description).toMatch(/^example-prod: /);
    }
    // The metrics they read come from DigitalOcean's agent, which the droplet installs.
    expect(stack.resource("digitalocean_droplet").monitoring).toBe(true);
  });

  test("an uptime check of https://<domain><healthPath> from every probe region", () => {
    expect(stack.resource("digitalocean_uptime_check")).toEqual({
      name: "example-prod health",
      type: "https",
      target: "https://app.example-client.com/healthz",
      regions: ["us_east", "us_west", "eu_west", "se_asia"],
      enabled: true,
    });
  });

  test("uptime alerts: down everywhere for 2m, slower than 2 s for 5m, certificate within 14 days; each on the check", () => {
    const alerts = stack.resources("digitalocean_uptime_alert");
    const shape = (a: Record<string, any>) => ({ type: a.type, comparison: a.comparison, threshold: a.threshold, period: a.period });
    expect(alerts.map(shape)).toEqual([
      { type: "down_global", comparison: "less_than", threshold: 1, period: "2m" },
      { type: "latency", comparison: "greater_than", threshold: 2000, period: "5m" },
      { type: "ssl_expiry", comparison: "less_than", threshold: 14, period: "5m" },
    ]);
    for (const alert of alerts) {
      expect(alert.check_id).toEqual(ref("digitalocean_uptime_check"));
      expect(alert.notifications).toEqual([{ email: ["ops@pixelco.example"] }]);
    }
  });

  test("without a domain: the check probes http://<reserved IP><healthPath>, and there is no certificate to watch", () => {
    const bare = synthesize({ ...prod, domain: undefined, app: { ...prod.app, healthPath: "/up" } });
    const check = bare.resource("digitalocean_uptime_check");
    expect(check.type).toBe("http");
    expect(check.target).toMatch(/^http:\/\/\$\{digitalocean_reserved_ip\.[A-Za-z0-9_]+\.ip_address\}\/up$/);
    expect(bare.resources("digitalocean_uptime_alert").map((a) => a.type)).toEqual(["down_global", "latency"]);
  });

  test("with nobody to tell (no emails, no Slack channel): no alert resources at all", () => {
    const silent = synthesize({ ...prod, alerts: { ...prod.alerts, emails: [], slackChannel: undefined } });
    for (const type of ["digitalocean_monitor_alert", "digitalocean_uptime_check", "digitalocean_uptime_alert"]) {
      expect({ type, found: silent.resources(type).length }).toEqual({ type, found: 0 });
    }
    expect(silent.json.variable?.[SLACK_URL_VARIABLE]).toBeUndefined();
  });

  test("Slack: the channel from the client file, the webhook URL only as a sensitive variable (never in cdk.tf.json)", () => {
    const withSlack = synthesize({ ...prod, alerts: { ...prod.alerts, slackChannel: "#ops" } });
    const slack = [{ channel: "#ops", url: `\${var.${SLACK_URL_VARIABLE}}` }];
    for (const alert of withSlack.resources("digitalocean_monitor_alert")) expect(alert.alerts).toEqual({ email: ["ops@pixelco.example"], slack });
    for (const alert of withSlack.resources("digitalocean_uptime_alert")) expect(alert.notifications).toEqual([{ email: ["ops@pixelco.example"], slack }]);
    expect(withSlack.json.variable[SLACK_URL_VARIABLE]).toMatchObject({ type: "string", sensitive: true, nullable: false });
    // Whatever the operator sets TF_VAR_alert_slack_webhook_url to, synthesis never sees it.
    process.env[`TF_VAR_${SLACK_URL_VARIABLE}`] = slackUrl;
    try {
      const text = JSON.stringify(synthesize({ ...prod, alerts: { ...prod.alerts, slackChannel: "#ops" } }).json);
      expect(text).not.toContain("hooks.slack.com/services");
      expect(text).not.toContain("notInTheStack");
    } finally {
      delete process.env[`TF_VAR_${SLACK_URL_VARIABLE}`];
    }
  });

  test("Slack only (no e-mails): the alerts go to Slack alone", () => {
    const slackOnly = synthesize({ ...prod, alerts: { ...prod.alerts, emails: [], slackChannel: "ops-alerts" } });
    expect(slackOnly.resources("digitalocean_monitor_alert")[0].alerts).toEqual({ slack: [{ channel: "ops-alerts", url: `\${var.${SLACK_URL_VARIABLE}}` }] });
  });

  test("Hetzner has no such resources: the same alerts settings create nothing there and are not refused", () => {
    const hetzner = shippedEnvironment("examplehz-prod");
    const json = JSON.stringify(synthesize({ ...hetzner, alerts: { ...hetzner.alerts, emails: ["ops@pixelco.example"], slackChannel: "#ops" } }).json);
    expect(json).not.toMatch(/digitalocean_(monitor_alert|uptime_check|uptime_alert)/);
    expect(json).not.toContain(SLACK_URL_VARIABLE);
  });
});
