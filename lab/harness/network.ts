/**
 * The test network: a private "VPC" the harness creates, so that machines never share the host's ports
 * (each runs its own sshd on :22, Caddy on :80, the app on its port) and never reach anything by accident.
 *
 *   host (this process)                       machine netns (one per machine)
 *   bridge kite2eN  10.213.N.1/24  <-- veth --> eth0 10.213.N.M/24   (no default route, no DNS)
 *
 * The harness's services (artifact mirror, S3, git) listen on the bridge address. The only way out is an
 * HTTP proxy on the bridge address that apt uses (Acquire::http::Proxy) and that forwards GETs to the
 * Debian mirror hosts of the host's apt sources, and nowhere else: so packages still come from Debian at
 * boot, but an ACME client, a stray `curl https://...` or a DNS lookup fails at once (no route) instead of
 * leaving the machine. No NAT, no ip_forward, no firewall rules: the host's network config is not changed
 * beyond the links and namespaces below, which teardown (or the next run, after a crash) deletes.
 */
import { existsSync } from "node:fs";
import { request as httpRequest, Agent, createServer } from "node:http";
import { closeServer, listen } from "./mirror.ts";
import { run, runSyncQuiet } from "./process.ts";
import { debianMirrorHosts } from "./rootfs.ts";
import { type Teardown } from "./teardown.ts";

/** 10.213.N.0/24: picked from this range so it never collides with the host's own networks. */
const SUBNET_PREFIX = "10.213";

export interface LabNetwork {
  /** Host side of the network; the harness's services listen here. */
  readonly hostAddress: string;
  readonly bridge: string;
  /** apt proxy for the machines (http only). */
  readonly aptProxyUrl: string;
  /** Requests the apt proxy handled: "200 GET http://deb.debian.org/...", "403 GET http://evil/..." */
  readonly aptRequests: readonly string[];
  /** Creates a network namespace for one machine with eth0 on this network. */
  attach(): Promise<MachineNic>;
}

export interface MachineNic {
  /** Network namespace name (`ip netns exec NAME ...`) and its path for `systemd-nspawn --network-namespace-path`. */
  readonly netns: string;
  readonly netnsPath: string;
  /** The machine's address (reach its sshd, Caddy, ... here from the host). */
  readonly address: string;
}

export async function createLabNetwork(teardown: Teardown): Promise<LabNetwork> {
  const { index, bridge } = await createBridge(teardown);
  const hostAddress = `${SUBNET_PREFIX}.${index}.1`;
  const aptRequests: string[] = [];
  const aptProxyUrl = await startAptProxy(teardown, hostAddress, aptRequests);
  let nextHost = 2;

  return {
    hostAddress,
    bridge,
    aptProxyUrl,
    aptRequests,
    attach: async () => {
      const host = nextHost++;
      if (host > 254) throw new Error(`lab network ${bridge} is full (253 machines)`);
      const netns = `kit-e2e-${index}-${host}`;
      const veth = `ke${index}m${host}`;
      const address = `${SUBNET_PREFIX}.${index}.${host}`;
      await run(["ip", "netns", "add", netns]);
      teardown.track({ kind: "netns", name: netns });
      // Create the pair with its peer already inside the namespace, then name the peer eth0 as on a droplet.
      await run(["ip", "link", "add", veth, "type", "veth", "peer", "name", `${veth}p`, "netns", netns]);
      teardown.track({ kind: "link", name: veth });
      await run(["ip", "link", "set", veth, "master", bridge, "up"]);
      const inNs = (...args: string[]) => run(["ip", "-n", netns, ...args]);
      await inNs("link", "set", `${veth}p`, "name", "eth0");
      await inNs("address", "add", `${address}/24`, "dev", "eth0");
      await inNs("link", "set", "eth0", "up");
      await inNs("link", "set", "lo", "up");
      return { netns, netnsPath: `/run/netns/${netns}`, address };
    },
  };
}

/** Creates bridge kite2eN on the first free 10.213.N.0/24 (the link name doubles as a lock between runs). */
async function createBridge(teardown: Teardown): Promise<{ index: number; bridge: string }> {
  const used = runSyncQuiet(["ip", "-o", "-4", "address", "show"]).stdout + runSyncQuiet(["ip", "-o", "-4", "route", "show"]).stdout;
  for (let index = 0; index < 256; index++) {
    const bridge = `kite2e${index}`;
    if (used.includes(`${SUBNET_PREFIX}.${index}.`) || existsSync(`/sys/class/net/${bridge}`)) continue;
    const created = await run(["ip", "link", "add", bridge, "type", "bridge"], { allowFailure: true });
    if (created.code !== 0) continue; // another run took it a moment ago
    teardown.track({ kind: "link", name: bridge });
    await run(["ip", "address", "add", `${SUBNET_PREFIX}.${index}.1/24`, "dev", bridge]);
    await run(["ip", "link", "set", bridge, "up"]);
    return { index, bridge };
  }
  throw new Error(`no free ${SUBNET_PREFIX}.N.0/24 for the test network: delete stale kite2e* links (ip link)`);
}

/**
 * A forward proxy for apt: GET/HEAD of http:// URLs on the Debian mirror hosts only. Anything else gets a
 * 403 that says why, which apt prints in its error.
 */
async function startAptProxy(teardown: Teardown, host: string, log: string[]): Promise<string> {
  const allowed = new Set(debianMirrorHosts());
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const server = createServer((req, res) => {
    let target: URL;
    try {
      target = new URL(req.url ?? "");
    } catch {
      log.push(`400 ${req.method} ${req.url}`);
      res.writeHead(400).end("kit-e2e apt proxy: expected an absolute http:// URL (is this a proxy request?)\n");
      return;
    }
    if (target.protocol !== "http:" || !allowed.has(target.hostname) || !["GET", "HEAD"].includes(req.method ?? "")) {
      log.push(`403 ${req.method} ${target}`);
      res
        .writeHead(403, { "content-type": "text/plain" })
        .end(`kit-e2e apt proxy: only GET/HEAD of http://{${[...allowed].join(",")}} leave the test network\n`);
      return;
    }
    const headers = { ...req.headers };
    for (const name of Object.keys(headers)) if (name.startsWith("proxy-")) delete headers[name];
    const upstream = httpRequest(target, { method: req.method, headers, agent }, (answer) => {
      log.push(`${answer.statusCode} ${req.method} ${target}`);
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on("error", (error) => {
      log.push(`502 ${req.method} ${target} (${error.message})`);
      if (!res.headersSent) res.writeHead(502).end(`kit-e2e apt proxy: ${target.host}: ${error.message}\n`);
      else res.destroy();
    });
    upstream.end();
  });
  // apt pipelines requests and keeps connections open for a long time.
  server.keepAliveTimeout = 60_000;
  server.on("connect", (req, socket) => {
    log.push(`403 CONNECT ${req.url}`);
    socket.end("HTTP/1.1 403 Forbidden\r\n\r\nkit-e2e apt proxy: no CONNECT (https) out of the test network\r\n");
  });
  const url = await listen(server, host);
  teardown.defer("apt proxy", async () => {
    agent.destroy();
    await closeServer(server);
  });
  return url;
}
