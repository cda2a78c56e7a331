// Invokes a function directly (Lambda's Invoke API, RequestResponse), signed with the SDK's own
// SigV4 signer and the credentials, region and endpoint of an S3Client: the project's SDK has no
// Lambda client, and one POST does not need one. The local cloud serves the same API.

import { SignatureV4 } from '@smithy/signature-v4';
import type { S3Client } from '@aws-sdk/client-s3';
import { request } from 'undici';

export class InvokeError extends Error {
  override name = 'InvokeError';
}

// The parts of S3Client.config used here (resolved configuration, typed loosely by the SDK).
interface ClientConfig {
  region: () => Promise<string>;
  credentials: () => Promise<{ accessKeyId: string; secretAccessKey: string; sessionToken?: string }>;
  sha256: new (secret?: unknown) => { update(data: Uint8Array | string): void; digest(): Promise<Uint8Array> };
}

export interface Invoker {
  /** The function's answer, parsed; throws InvokeError when Lambda refused or the function failed. */
  invoke(payload: unknown): Promise<unknown>;
}

/** An invoker of `functionName` at `endpoint` (default: the region's Lambda endpoint). */
export async function functionInvoker(s3: S3Client, functionName: string, endpoint?: string): Promise<Invoker> {
  const config = s3.config as unknown as ClientConfig;
  const region = await config.region();
  const base = new URL(endpoint ?? `https://lambda.${region}.amazonaws.com`);
  const signer = new SignatureV4({ credentials: config.credentials, region, service: 'lambda', sha256: config.sha256 });
  const path = `/2015-03-31/functions/${encodeURIComponent(functionName)}/invocations`;
  return {
    async invoke(payload) {
      const body = JSON.stringify(payload);
      const signed = await signer.sign({
        method: 'POST',
        protocol: base.protocol,
        hostname: base.hostname,
        ...(base.port ? { port: Number(base.port) } : {}),
        path,
        headers: { host: base.host, 'content-type': 'application/json', 'x-amz-invocation-type': 'RequestResponse' },
        body,
      });
      const answer = await request(new URL(path, base), { method: 'POST', headers: signed.headers, body, headersTimeout: 900_000, bodyTimeout: 900_000 });
      const text = await answer.body.text();
      const parsed = parseJson(text);
      if (answer.statusCode !== 200) {
        const type = String(answer.headers['x-amzn-errortype'] ?? '').split(':')[0] || `HTTP ${answer.statusCode}`;
        const message = field(parsed, 'message') ?? field(parsed, 'Message') ?? text.slice(0, 200);
        const hint = /AccessDenied/.test(type) ? ' (your credentials need lambda:InvokeFunction on it)' : '';
        throw new InvokeError(`Lambda refused to invoke ${functionName}: ${type}: ${message}${hint}`);
      }
      if (answer.headers['x-amz-function-error']) {
        throw new InvokeError(`${functionName} failed: ${field(parsed, 'errorType') ?? 'error'}: ${field(parsed, 'errorMessage') ?? text.slice(0, 200)}`);
      }
      return parsed;
    },
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function field(value: unknown, key: string): string | undefined {
  const v = value && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
  return typeof v === 'string' ? v : undefined;
}
