/**
 * A TCP relay that can be cut: a stand-in for a network outage between a server and a service (S3).
 * While cut, nothing listens on its port, so connections are refused at once, as when a route or a
 * firewall rule is wrong; `restore()` listens on the same port again, so the server's configuration stays
 * valid across the outage.
 *
 *   const relay = await startRelay(teardown, { host: network.hostAddress, target: s3.endpoint });
 *   relay.cut();      // S3 unreachable through relay.endpoint
 *   await relay.restore();
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
  /** Listens again on the same port. */
  restore(): Promise<void>;
}

export async function startRelay(teardown: Teardown, options: { host: string; target: string }): Promise<Relay> {
  const target = new URL(options.target);
  const sockets = new Set<Socket>();
  let connections = 0;
  let server: Server | undefined;

  const open = (port: number) =>
    new Promise<number>((resolve, reject) => {
      const listening = createServer((client) => {
        connections++;
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
    restore: async () => {
      if (!server) await open(port);
    },
  };
}
