/** A minimal SigV4 client for the lab's conformance tests: one signed request, the whole answer back. */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { request as plainRequest } from "node:http";
import { signRequest, UNSIGNED_PAYLOAD } from "./sigv4.ts";

export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  readonly text: string;
}

export interface ClientCreds {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly region: string;
}

export function s3Request(
  endpoint: string,
  caFile: string,
  creds: ClientCreds | undefined,
  method: string,
  url: string,
  o: { body?: Buffer | string; headers?: Record<string, string>; unsigned?: boolean; payloadHash?: string; rawBody?: Buffer } = {},
): Promise<Answer> {
  const body = o.body === undefined ? Buffer.alloc(0) : Buffer.from(o.body);
  const target = new URL(endpoint);
  const payloadHash = o.payloadHash ?? (o.unsigned ? UNSIGNED_PAYLOAD : createHash("sha256").update(body).digest("hex"));
  const sent = o.rawBody ?? body;
  const headers: Record<string, string> = { ...o.headers, "content-length": String(sent.length) };
  const signed = creds ? signRequest({ method, url, host: target.host, headers, payloadHash }, creds) : headers;
  const send = target.protocol === "https:" ? request : plainRequest;
  return new Promise((resolve, reject) => {
    const req = send({ host: target.hostname, port: target.port, method, path: url, headers: signed, ca: readFileSync(caFile) }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const all = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: all, text: all.toString("utf8") });
      });
    });
    req.on("error", reject);
    req.end(sent);
  });
}
