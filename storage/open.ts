// Opens a blob store from a URI: `s3://bucket/prefix`, `file:///abs/path`, or a plain directory path.
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BlobStore } from './blob-store.js';
import { DirectoryBlobStore } from './dir-store.js';
import type { S3StoreOptions } from './s3-store.js';

export interface OpenOptions {
  s3?: S3StoreOptions;
}

export async function openBlobStore(uri: string, options: OpenOptions = {}): Promise<BlobStore> {
  if (typeof uri !== 'string' || uri.trim() === '') throw new Error('blob store URI is empty');
  if (uri.startsWith('s3://')) {
    // Loaded on demand so runs on a local directory never pay for the AWS SDK.
    const { S3BlobStore } = await import('./s3-store.js');
    return new S3BlobStore(uri, options.s3);
  }
  if (uri.startsWith('file://')) {
    const path = fileURLToPath(uri);
    return new DirectoryBlobStore(path);
  }
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(uri);
  if (scheme) throw new Error(`unsupported blob store URI scheme "${scheme[1]}:" in ${uri} (use s3://bucket/prefix, file:///path or a directory path)`);
  return new DirectoryBlobStore(isAbsolute(uri) ? resolve(uri) : resolve(process.cwd(), uri));
}
