import { Certificate } from "@cdktf/provider-digitalocean/lib/certificate/index.js";
import { Loadbalancer, type LoadbalancerForwardingRule } from "@cdktf/provider-digitalocean/lib/loadbalancer/index.js";
import { Construct } from "constructs";
import type { ResolvedEnvironment } from "../app/config/types.ts";
import { LB_HEALTH_CHECK, lbHealthPath } from "../cloud-init/load-balancer.ts";

export interface AppLoadBalancerProps {
  readonly env: ResolvedEnvironment;
  /** The tag every app server of the environment carries: the load balancer sends to the droplets that have it. */
  readonly serverTag: string;
}

/**
 * A DigitalOcean regional load balancer in front of `servers` > 1. It health-checks every droplet carrying the
 * server tag at `http://<droplet>:80<app.healthPath>` (through Caddy, which proxies to the live app slot) and sends
 * only to the healthy ones, so a server taken out for a deploy or a reboot drops out and comes back by itself. The
 * check is cloud-init/load-balancer.ts's LB_HEALTH_CHECK, from which deploy.ts derives how long a drain takes.
 *
 * TLS: with a domain the load balancer terminates it, with a Let's Encrypt certificate DigitalOcean obtains and renews
 * (type lets_encrypt: the domain's zone must be on DigitalOcean, which validation requires), and forwards plain HTTP
 * to port 80 of the servers; port 80 redirects to HTTPS. Caddy on each server cannot get a certificate behind a load
 * balancer (an ACME challenge reaches whichever server the balancer picks), so behind it Caddy serves plain HTTP.
 * Without a domain it forwards port 80 only. The droplets' firewall admits port 80 from this load balancer alone.
 */
export class AppLoadBalancer extends Construct {
  readonly resource: Loadbalancer;

  constructor(scope: Construct, id: string, props: AppLoadBalancerProps) {
    super(scope, id);
    const { env } = props;
    const port = LB_HEALTH_CHECK.port;
    const http: LoadbalancerForwardingRule = { entryProtocol: "http", entryPort: 80, targetProtocol: "http", targetPort: port };
    const domain = env.domain;
    const rules: LoadbalancerForwardingRule[] = [http];
    if (domain) {
      const certificate = new Certificate(this, "Certificate", {
        name: `${env.names.server}-${domain.name.replace(/\./g, "-")}`.slice(0, 255),
        type: "lets_encrypt",
        domains: [domain.name],
        // A renamed certificate is created before the old one goes: the load balancer always has one.
        lifecycle: { createBeforeDestroy: true },
      });
      rules.unshift({ entryProtocol: "https", entryPort: 443, targetProtocol: "http", targetPort: port, certificateName: certificate.name });
    }
    this.resource = new Loadbalancer(this, "LoadBalancer", {
      name: env.names.server,
      region: env.region,
      sizeUnit: 1,
      dropletTag: props.serverTag,
      forwardingRule: rules,
      redirectHttpToHttps: domain !== undefined,
      // The stack writes the domain's A record itself (DnsA → this load balancer).
      disableLetsEncryptDnsRecords: true,
      healthcheck: {
        protocol: LB_HEALTH_CHECK.protocol,
        port: LB_HEALTH_CHECK.port,
        path: lbHealthPath(env),
        checkIntervalSeconds: LB_HEALTH_CHECK.intervalSeconds,
        responseTimeoutSeconds: LB_HEALTH_CHECK.timeoutSeconds,
        unhealthyThreshold: LB_HEALTH_CHECK.unhealthyThreshold,
        healthyThreshold: LB_HEALTH_CHECK.healthyThreshold,
      },
    });
  }
}
