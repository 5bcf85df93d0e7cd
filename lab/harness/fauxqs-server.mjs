// Runs fauxqs's S3 emulator for the e2e harness (lab/harness/s3.ts starts it with Deno).
//
// Why Deno: fauxqs 2.x imports node:sqlite, which Node 20 lacks. Why buildApp and not startFauxqs:
// startFauxqs always listens on 0.0.0.0; the harness listens only on the address it is given.
//
// Usage: deno run ... fauxqs-server.mjs HOST   -> prints {"port":N} on stdout once listening.
// It exits when its stdin closes, so it never outlives the test process that started it.
import process from "node:process";
import { buildApp } from "fauxqs";

const host = process.argv[2] ?? "127.0.0.1";
const app = buildApp({ logger: false });
const address = await app.listen({ port: 0, host });
console.log(JSON.stringify({ port: Number(new URL(address).port) }));

const stop = async () => {
  await app.close();
  process.exit(0);
};
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
