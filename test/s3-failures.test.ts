// S3 failure modes: an endpoint nobody listens on, a server that never answers, wrong credentials and a
// missing bucket all fail within a bounded time with messages naming bucket, key and cause, no secrets.
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3BlobStore, S3StoreError } from '../storage/s3-store.js';
import { freePort } from './net.js';
import { localServices, uniqueS3Uri } from './services-env.js';

async function listen(onConnection: (socket: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(onConnection);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port };
}


async function failure(promise: Promise<unknown>): Promise<{ error: S3StoreError; seconds: number }> {
  const started = Date.now();
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(S3StoreError);
    const seconds = (Date.now() - started) / 1000;
    console.log(`failed after ${seconds.toFixed(2)}s: ${(error as Error).message}`);
    return { error: error as S3StoreError, seconds };
  }
  throw new Error('expected the operation to fail');
}

describe('S3 store when the server is unreachable', () => {
  const silent: Socket[] = [];
  let blackhole: { server: Server; port: number };
  beforeAll(async () => {
    localServices(); // credentials in the environment, as a user would have them
    blackhole = await listen((socket) => silent.push(socket)); // accepts, never answers
  });
  afterAll(async () => {
    for (const s of silent) s.destroy();
    await new Promise((resolve) => blackhole.server.close(resolve));
  });

  it('retries a refused connection with backoff until its deadline, then names bucket, key and cause', async () => {
    const port = await freePort();
    const store = new S3BlobStore('s3://dro-dev/runs', { endpoint: `http://127.0.0.1:${port}`, retryForMs: 2000 });
    const { error } = await failure(store.get('run-1/checkpoints/00000001/manifest.json'));
    expect(error.message).toMatch(
      new RegExp(`^S3 get of s3://dro-dev/runs/run-1/checkpoints/00000001/manifest\\.json via http://127\\.0\\.0\\.1:${port} failed after \\d+ attempts over \\d+\\.\\ds: .*ECONNREFUSED`),
    );
    expect(Number(/after (\d+) attempts/.exec(error.message)![1])).toBeGreaterThan(2);
    await expect(store.put('x', new Uint8Array(10))).rejects.toThrow(/S3 put of s3:\/\/dro-dev\/runs\/x .*ECONNREFUSED/);
    await expect(store.list('run-1/')).rejects.toThrow(/S3 list of s3:\/\/dro-dev\/runs\/run-1\/ /);
    await store.close();
  });

  it('a server that accepts but never answers times out instead of hanging', async () => {
    const store = new S3BlobStore('s3://dro-dev', { endpoint: `http://127.0.0.1:${blackhole.port}`, retryForMs: 1500, idleTimeoutMs: 500 });
    const { error } = await failure(store.exists('some/key'));
    expect(error.message).toMatch(/S3 exists of s3:\/\/dro-dev\/some\/key .*failed.*(Timeout|timed out|socket)/i);
    await store.close();
  });

  it('an abort stops the retry loop at once', async () => {
    const port = await freePort();
    const store = new S3BlobStore('s3://dro-dev', { endpoint: `http://127.0.0.1:${port}`, retryForMs: 600_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('cancelled by test')), 300);
    await expect(store.get('k', { signal: controller.signal })).rejects.toThrow('cancelled by test');
    await store.close();
  });
});

describe('S3 store errors from a real server', () => {
  it('wrong credentials fail at once, naming bucket and key, and never print the secret or key id', async () => {
    const { s3Endpoint } = localServices();
    const secretAccessKey = 'THIS-IS-A-WRONG-SECRET-0123456789abcdef';
    const accessKeyId = 'WRONGKEYID1234567890';
    const store = new S3BlobStore(uniqueS3Uri('creds'), { endpoint: s3Endpoint, credentials: { accessKeyId, secretAccessKey }, retryForMs: 60_000 });
    const { error } = await failure(store.get('private/model.safetensors'));
    expect(error.message).toMatch(/^S3 get of s3:\/\/dro-dev\/test\/creds-[^ ]+\/private\/model\.safetensors via http:\/\/127\.0\.0\.1:\d+ failed: (InvalidAccessKeyId|AccessDenied|SignatureDoesNotMatch)/);
    expect(error.message).not.toContain(secretAccessKey);
    expect(error.message).not.toContain(accessKeyId);
    expect(JSON.stringify(error)).not.toContain(secretAccessKey);
    await store.close();
  });

  it('a missing bucket is a clear, immediate error', async () => {
    localServices();
    const bucket = `no-such-bucket-${Date.now().toString(36)}`;
    const store = new S3BlobStore(`s3://${bucket}/x`, { retryForMs: 60_000 });
    const { error } = await failure(store.put('a', new Uint8Array(1)));
    expect(error.message).toMatch(new RegExp(`^S3 put of s3://${bucket}/x/a .* failed: NoSuchBucket`));
    await expect(store.get('a')).rejects.toThrow(new RegExp(`^S3 get of s3://${bucket}/x/a .* failed: NoSuchBucket`));
    // exists() too: a missing bucket is not "no such object".
    await expect(store.exists('a')).rejects.toThrow(new RegExp(`^S3 exists of s3://${bucket}/x/a failed: NoSuchBucket`));
    await store.close();
  });

  it('credentials written into the endpoint URL or the store URI never appear in a message', async () => {
    const { s3Endpoint } = localServices();
    const url = new URL(s3Endpoint);
    const secret = 'ENDPOINT-SECRET-0123456789';
    const store = new S3BlobStore(uniqueS3Uri('userinfo'), { endpoint: `${url.protocol}//KEYIDINURL:${secret}@${url.host}`, credentials: { accessKeyId: 'WRONGKEYID1234567890', secretAccessKey: 'WRONG-SECRET-abcdef0123' }, retryForMs: 30_000 });
    const { error } = await failure(store.get('x'));
    expect(error.message).toContain('via http://[redacted]@127.0.0.1');
    expect(error.message).not.toContain(secret);
    expect(error.message).not.toContain('KEYIDINURL');
    await store.close();
    expect(() => new S3BlobStore(`s3://AKIAEXAMPLE:${secret}@dro-dev/x`)).toThrow(/^s3:\/\/\[redacted\]@dro-dev\/x: credentials do not belong in an S3 URI/);
    expect(() => new S3BlobStore(`s3://AKIAEXAMPLE:${secret}@dro-dev/x`)).not.toThrow(new RegExp(secret));
  });

  it('a malformed retry setting in the environment is an error naming the variable', () => {
    const saved = process.env.DRO_S3_RETRY_SECONDS;
    process.env.DRO_S3_RETRY_SECONDS = 'soon';
    try {
      expect(() => new S3BlobStore('s3://dro-dev')).toThrow(/DRO_S3_RETRY_SECONDS must be a positive number, got "soon"/);
    } finally {
      if (saved === undefined) delete process.env.DRO_S3_RETRY_SECONDS;
      else process.env.DRO_S3_RETRY_SECONDS = saved;
    }
  });
});
