// Blob store on S3 or an S3-compatible server (SeaweedFS, MinIO, AWS). The only module that imports
// @aws-sdk/*. Retries transient failures with backoff until a deadline, then fails naming bucket and key.
import { randomInt } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import {
  BlobNotFoundError,
  InvalidKeyError,
  MAX_KEY_LENGTH,
  utf8Length,
  validateKey,
  validatePrefix,
  type BlobInfo,
  type BlobSource,
  type BlobStore,
  type OpOptions,
} from './blob-store.js';

export interface S3StoreOptions {
  /** How long one operation keeps retrying transient failures before it gives up (ms). */
  retryForMs?: number;
  /** Objects at least this large are written with multipart upload (bytes). */
  multipartThreshold?: number;
  /** Multipart part size (bytes); S3 requires at least 5 MiB. */
  partSize?: number;
  /** TCP connect timeout per attempt (ms): a server that does not answer must not hang a run. */
  connectTimeoutMs?: number;
  /** A request whose socket stays silent this long fails (and is retried): a stalled server never hangs a run (ms). */
  idleTimeoutMs?: number;
  /** Endpoint override; by default AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, then AWS itself. */
  endpoint?: string;
  region?: string;
  /** Explicit credentials for programmatic use (dev services); by default the AWS credential chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

const MiB = 1024 * 1024;

// The SDK warns on every process start that releases after January 2027 need Node 22. Our SDK version
// is pinned by the lock file, so the warning is noise in every CLI run; users can still turn it on.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** Defaults, each overridable by option or by the environment variable named beside it. */
function resolveOptions(options: S3StoreOptions): Required<Omit<S3StoreOptions, 'endpoint' | 'region' | 'credentials'>> & Pick<S3StoreOptions, 'endpoint' | 'region'> {
  const env = process.env;
  const num = (name: string, fallback: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`environment variable ${name} must be a positive number, got ${JSON.stringify(raw)}`);
    return value;
  };
  const endpoint = options.endpoint ?? (env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined);
  const region = options.region ?? (env.AWS_REGION || env.AWS_DEFAULT_REGION || (endpoint ? 'us-east-1' : undefined));
  return {
    retryForMs: options.retryForMs ?? num('DRO_S3_RETRY_SECONDS', 120) * 1000,
    multipartThreshold: options.multipartThreshold ?? 16 * MiB,
    partSize: options.partSize ?? 8 * MiB,
    connectTimeoutMs: options.connectTimeoutMs ?? 5_000,
    idleTimeoutMs: options.idleTimeoutMs ?? 30_000,
    endpoint,
    region,
  };
}

/** A URL with any `user:password@` part replaced, for messages. */
export function withoutUserinfo(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, '$1[redacted]@');
}

/** Parses `s3://bucket/prefix` into its parts, rejecting names S3 would refuse. */
export function parseS3Uri(uri: string): { bucket: string; prefix: string } {
  const match = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(uri);
  if (!match) throw new Error(`not an S3 URI (expected s3://bucket/prefix): ${withoutUserinfo(uri)}`);
  if (match[1]!.includes('@')) throw new Error(`${withoutUserinfo(uri)}: credentials do not belong in an S3 URI; they come from the environment or the AWS credential chain`);
  const bucket = match[1]!;
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new Error(`invalid S3 bucket name ${JSON.stringify(bucket)} in ${uri}: 3-63 characters, lower-case letters, digits, '.' and '-'`);
  }
  let prefix = match[2] ?? '';
  if (prefix !== '') {
    prefix = prefix.replace(/\/+$/, '');
    validateKey(prefix, 'S3 prefix');
    prefix += '/';
  }
  return { bucket, prefix };
}

export class S3BlobStore implements BlobStore {
  readonly location: string;
  readonly bucket: string;
  private readonly prefix: string;
  private readonly opts: ReturnType<typeof resolveOptions>;
  /** One attempt per request: our own loop owns retries so they are bounded by time, not count. */
  private readonly client: S3Client;
  /** Multipart uploads from a stream cannot be replayed whole, so their parts retry inside the SDK. */
  private readonly uploadClient: S3Client;
  private bucketChecked: Promise<void> | undefined;

  constructor(uri: string, options: S3StoreOptions = {}) {
    const { bucket, prefix } = parseS3Uri(uri);
    this.bucket = bucket;
    this.prefix = prefix;
    this.location = `s3://${bucket}/${prefix}`;
    this.opts = resolveOptions(options);
    const base: S3ClientConfig = {
      region: this.opts.region,
      ...(this.opts.endpoint ? { endpoint: this.opts.endpoint, forcePathStyle: true } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
      // No whole-request timeout: a 256 MiB part may legitimately take long; silence is what we bound.
      requestHandler: { connectionTimeout: this.opts.connectTimeoutMs, socketTimeout: this.opts.idleTimeoutMs },
    };
    this.client = new S3Client({ ...base, maxAttempts: 1 });
    this.uploadClient = new S3Client({ ...base, maxAttempts: 6, retryMode: 'standard' });
  }

  private objectKey(key: string): string {
    validateKey(key);
    if (utf8Length(this.prefix + key) > MAX_KEY_LENGTH) throw new InvalidKeyError(`key ${JSON.stringify(key)} under prefix ${this.prefix} is longer than S3's ${MAX_KEY_LENGTH} UTF-8 bytes`);
    return this.prefix + key;
  }

  async put(key: string, data: Uint8Array, opts: OpOptions = {}): Promise<void> {
    const Key = this.objectKey(key);
    const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    await this.retrying('put', key, opts, async (signal) => {
      if (data.byteLength >= this.opts.multipartThreshold) {
        await this.upload(Key, body, signal, this.client);
      } else {
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentLength: data.byteLength }), { abortSignal: signal });
      }
    });
  }

  async putIfAbsent(key: string, data: Uint8Array, opts: OpOptions = {}): Promise<boolean> {
    const Key = this.objectKey(key);
    if (data.byteLength >= this.opts.multipartThreshold) throw new Error(`putIfAbsent of ${key}: ${data.byteLength} bytes is too large for one conditional PUT`);
    const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    try {
      // If-None-Match: * makes the server refuse (412) when the key exists: of concurrent writers one creates it.
      await this.retrying('putIfAbsent', key, opts, (signal) =>
        this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentLength: data.byteLength, IfNoneMatch: '*' }), { abortSignal: signal }),
      );
      return true;
    } catch (err) {
      // A retried attempt may find the object its own lost first attempt created; callers compare contents.
      if (err instanceof S3StoreError && (err.causeName === 'PreconditionFailed' || err.status === 412)) return false;
      throw err;
    }
  }

  async putStream(key: string, source: BlobSource, opts: OpOptions = {}): Promise<{ bytes: number }> {
    const Key = this.objectKey(key);
    let bytes = 0;
    async function* counted(): AsyncGenerator<Uint8Array> {
      for await (const chunk of source as AsyncIterable<Uint8Array>) {
        bytes += chunk.byteLength;
        yield chunk;
      }
    }
    // No outer retry: a consumed stream cannot be sent again. Parts retry inside uploadClient.
    try {
      opts.signal?.throwIfAborted();
      await this.upload(Key, Readable.from(counted()), opts.signal, this.uploadClient);
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      throw await this.failure('putStream', key, err, 1, 0);
    }
    return { bytes };
  }

  private async upload(Key: string, Body: Buffer | Readable, signal: AbortSignal | undefined, client: S3Client): Promise<void> {
    const upload = new Upload({
      client,
      params: { Bucket: this.bucket, Key, Body },
      partSize: this.opts.partSize,
      queueSize: 4,
      leavePartsOnError: false,
    });
    const onAbort = (): void => void upload.abort().catch(() => undefined);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await upload.done();
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async get(key: string, opts: OpOptions = {}): Promise<Uint8Array> {
    const Key = this.objectKey(key);
    return this.retrying('get', key, opts, async (signal) => {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }), { abortSignal: signal });
      if (!res.Body) throw new Error('response has no body');
      return res.Body.transformToByteArray();
    });
  }

  async getStream(key: string, opts: OpOptions = {}): Promise<Readable> {
    const Key = this.objectKey(key);
    return this.retrying('getStream', key, opts, async (signal) => {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }), { abortSignal: signal });
      if (!(res.Body instanceof Readable)) throw new Error('response body is not a Node stream');
      return res.Body;
    });
  }

  async list(prefix: string, opts: OpOptions = {}): Promise<BlobInfo[]> {
    validatePrefix(prefix);
    const out: BlobInfo[] = [];
    let token: string | undefined;
    do {
      const page = await this.retrying('list', prefix, opts, (signal) =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token }), { abortSignal: signal }),
      );
      for (const item of page.Contents ?? []) {
        if (item.Key === undefined || !item.Key.startsWith(this.prefix)) continue;
        const key = item.Key.slice(this.prefix.length);
        // Folder markers made by other tools ("dir/") are not objects of ours.
        if (key === '' || key.endsWith('/')) continue;
        out.push({ key, bytes: item.Size ?? 0 });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string, opts: OpOptions = {}): Promise<void> {
    const Key = this.objectKey(key);
    await this.retrying('delete', key, opts, (signal) => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }), { abortSignal: signal }));
  }

  async exists(key: string, opts: OpOptions = {}): Promise<boolean> {
    const Key = this.objectKey(key);
    try {
      await this.retrying('exists', key, opts, (signal) => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }), { abortSignal: signal }));
      return true;
    } catch (err) {
      if (!(err instanceof BlobNotFoundError)) throw err;
    }
    // HEAD answers a bare 404 for a missing bucket too: "no such object" only once the bucket is known to exist.
    this.bucketChecked ??= this.retrying('exists', key, opts, (signal) => this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: signal })).then(
      () => undefined,
      (err: unknown) => {
        this.bucketChecked = undefined;
        if (err instanceof BlobNotFoundError) throw new S3StoreError(`S3 exists of s3://${this.bucket}/${this.prefix}${key} failed: NoSuchBucket: the bucket ${this.bucket} does not exist`, this.bucket, key, 'NoSuchBucket', 404);
        throw err;
      },
    );
    await this.bucketChecked;
    return false;
  }

  /** Size and ETag of an object (a multipart object's ETag ends in -<part count>). */
  async head(key: string, opts: OpOptions = {}): Promise<{ bytes: number; etag: string }> {
    const Key = this.objectKey(key);
    const res = await this.retrying('head', key, opts, (signal) => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }), { abortSignal: signal }));
    return { bytes: res.ContentLength ?? 0, etag: res.ETag ?? '' };
  }

  /** Creates the bucket when it does not exist (dev servers; a real bucket is made by its owner). */
  async ensureBucket(opts: OpOptions = {}): Promise<void> {
    await this.retrying('ensureBucket', '', opts, async (signal) => {
      try {
        await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: signal });
      } catch (err) {
        if (httpStatus(err) !== 404 && errorName(err) !== 'NotFound' && errorName(err) !== 'NoSuchBucket') throw err;
        try {
          await this.client.send(new CreateBucketCommand({ Bucket: this.bucket }), { abortSignal: signal });
        } catch (createErr) {
          if (errorName(createErr) !== 'BucketAlreadyOwnedByYou') throw createErr;
        }
      }
    });
  }

  close(): Promise<void> {
    this.client.destroy();
    this.uploadClient.destroy();
    return Promise.resolve();
  }

  /** Runs `attempt` until it succeeds, fails permanently, the deadline passes, or the caller aborts. */
  private async retrying<T>(op: string, key: string, opts: OpOptions, attempt: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
    const started = Date.now();
    let tries = 0;
    let delay = 200;
    for (;;) {
      tries++;
      try {
        opts.signal?.throwIfAborted();
        return await attempt(opts.signal);
      } catch (err) {
        if (opts.signal?.aborted) throw opts.signal.reason ?? err;
        if (isNotFound(err)) throw new BlobNotFoundError(this.location, key);
        const elapsed = Date.now() - started;
        if (!isTransient(err) || elapsed + delay > this.opts.retryForMs) throw await this.failure(op, key, err, tries, elapsed);
        await sleep(delay + randomInt(0, Math.max(1, Math.floor(delay / 2))), opts.signal);
        delay = Math.min(delay * 2, 5_000);
      }
    }
  }

  /** An error naming the operation, bucket, key and cause, with any credential text removed. */
  private async failure(op: string, key: string, err: unknown, tries: number, elapsedMs: number): Promise<S3StoreError> {
    const secrets: string[] = [];
    try {
      const creds = await this.client.config.credentials();
      for (const s of [creds.accessKeyId, creds.secretAccessKey, creds.sessionToken]) if (s) secrets.push(s);
    } catch {
      // No credentials resolvable: nothing to redact, and the cause already says so.
    }
    // Credentials written into the endpoint URL are secrets too, wherever the SDK repeats them.
    const userinfo = this.opts.endpoint ? /^[a-z][a-z0-9+.-]*:\/\/([^/@]*)@/i.exec(this.opts.endpoint)?.[1] : undefined;
    if (userinfo) for (const part of [userinfo, ...userinfo.split(':')]) secrets.push(part, decodeURIComponent(part));
    const cause = redact(describeCause(err), secrets);
    const where = key ? `s3://${this.bucket}/${this.prefix}${key}` : `s3://${this.bucket}`;
    const endpoint = this.opts.endpoint ? ` via ${withoutUserinfo(this.opts.endpoint)}` : '';
    const retried = tries > 1 ? ` after ${tries} attempts over ${(elapsedMs / 1000).toFixed(1)}s` : '';
    return new S3StoreError(`S3 ${op} of ${where}${endpoint} failed${retried}: ${cause}`, this.bucket, key, errorName(err), httpStatus(err));
  }
}

export class S3StoreError extends Error {
  override readonly name = 'S3StoreError';
  constructor(
    message: string,
    readonly bucket: string,
    readonly key: string,
    readonly causeName: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

function errorName(err: unknown): string {
  if (typeof err !== 'object' || err === null) return String(err);
  const e = err as { name?: unknown; Code?: unknown; code?: unknown };
  for (const v of [e.Code, e.name, e.code]) if (typeof v === 'string' && v !== '') return v;
  return 'Error';
}

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

function isNotFound(err: unknown): boolean {
  const name = errorName(err);
  return name === 'NoSuchKey' || name === 'NotFound' || (httpStatus(err) === 404 && name !== 'NoSuchBucket');
}

const TRANSIENT_NAMES = new Set([
  'TimeoutError', 'RequestTimeout', 'RequestTimeoutException', 'SlowDown', 'Throttling', 'ThrottlingException',
  'TooManyRequestsException', 'RequestThrottled', 'InternalError', 'ServiceUnavailable', 'ECONNREFUSED',
  'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ECONNABORTED',
  // A conditional PUT that raced another write: try again (it then succeeds or finds the key taken).
  'ConditionalRequestConflict',
]);

function isTransient(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { name?: string; code?: string; $retryable?: unknown; cause?: unknown };
  const status = httpStatus(err);
  if (status !== undefined && (status >= 500 || status === 429 || status === 408)) return true;
  if (e.$retryable) return true;
  if (TRANSIENT_NAMES.has(errorName(err)) || (e.code && TRANSIENT_NAMES.has(e.code))) return true;
  if (e.name === 'AggregateError' || /socket hang up|ECONNREFUSED|ECONNRESET/.test(String((err as Error).message))) return true;
  return e.cause !== undefined && e.cause !== err && isTransient(e.cause);
}

function describeCause(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const name = errorName(err);
  let message = err.message || '';
  // Node reports "connection refused to every address" as an AggregateError with an empty message.
  if (!message && err instanceof AggregateError) message = err.errors.map((e: unknown) => (e instanceof Error ? e.message : String(e))).join('; ');
  const status = httpStatus(err);
  return `${name}${status ? ` (HTTP ${status})` : ''}${message && message !== name ? `: ${message}` : ''}`;
}

function redact(text: string, secrets: string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join('[redacted]');
  return out;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
