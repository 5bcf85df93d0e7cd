// Starts fauxqs (S3-compatible, in memory) on a free loopback port and prints {"port": N} on stdout.
// Run with Deno (`npx deno run -A`): fauxqs 2.x needs node:sqlite, which Node 20 does not have.
// Usage: deno run -A fauxqs-server.mjs BUCKET...
import { startFauxqs } from "../../node_modules/fauxqs/dist/app.js";

const server = await startFauxqs({ port: 0, logger: false, host: "127.0.0.1" });
for (const bucket of Deno.args) server.createBucket(bucket);
console.log(JSON.stringify({ port: server.port }));
