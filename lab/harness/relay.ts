/**
 * A TCP relay that can be cut: a stand-in for a network outage between a server and a service (S3).
 * While cut, nothing listens on its port, so connections are refused at once, as when a route or a
 * firewall rule is wrong; `restore()` listens on the same port again, so the server's configuration stays
 * valid across the outage.
 *
 *   const relay = await startRelay(teardown, { host: network.hostAddress, target: s3.endpoint });
 *   relay.cut();      // S3 unreachable through relay.endpoint
 *   await relay.restore();
 *   await relay.restore({ connections: 1 }); // S3 back for one connection (one curl request), then gone again
 */
import { createServer, type Server, type Socket, connect } from "node:net";
import { type Teardown } from "./teardown.ts";

export interface Relay {
  /**
   * `https://host:port` (the target's scheme): give it to the server instead of the target's endpoint. TLS
   * passes through untouched, so a relay on the target's host needs no certificate of its own.
   */
  readonly endpoint: string;
  /** Connections relayed so far (a cut relay counts none). */
  readonly connections: number;
  /** Stops listening and drops open connections: new connections are refused. */
  cut(): Promise<void>;
  /**
   * Listens again on the same port. With `connections`, relays only that many new connections, then stops
   * listening by itself (those it relays run to their end): an outage that lifts for exactly one request.
   */
  restore(options?: { readonly connections?: number }): Promise<void>;
}

export async function startRelay(teardown: Teardown, options: { host: string; target: string }): Promise<Relay> {
  const target = new URL(options.target);
  const sockets = new Set<Socket>();
  let connections = 0;
  let server: Server | undefined;
  /** How many more connections to relay before cutting by itself; undefined: no limit. */
  let allowance: number | undefined;

  const open = (port: number) =>
    new Promise<number>((resolve, reject) => {
      const listening = createServer((client) => {
        if (allowance === 0) {
          client.destroy(); // arrived with the last allowed one, before the close
          return;
        }
        connections++;
        if (allowance !== undefined && --allowance === 0) {
          // Refuse the next connection at once, as a cut does, but leave this one open.
          server = undefined;
          listening.close();
        }
        const upstream = connect(Number(target.port), target.hostname);
        for (const socket of [client, upstream]) {
          sockets.add(socket);
          socket.once("close", () => sockets.delete(socket));
          socket.on("error", () => socket.destroy());
        }
        client.once("close", () => upstream.destroy());
        upstream.once("close", () => client.destroy());
        client.pipe(upstream).pipe(client);
      });
      listening.once("error", reject);
      listening.listen(port, options.host, () => {
        server = listening;
        resolve((listening.address() as { port: number }).port);
      });
    });
  const close = () =>
    new Promise<void>((resolve) => {
      const closing = server;
      server = undefined;
      for (const socket of sockets) socket.destroy();
      if (!closing) return resolve();
      closing.close(() => resolve());
    });

  const port = await open(0);
  teardown.defer(`relay :${port}`, close);
  return {
    endpoint: `${target.protocol}//${options.host}:${port}`,
    get connections() {
      return connections;
    },
    cut: close,
    restore: async (restoring = {}) => {
      allowance = restoring.connections;
      if (!server) await open(port);
    },
  };
}
