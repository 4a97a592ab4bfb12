// The blob store contract on S3, against the real SeaweedFS started by `npm run services:up`.
import { describe, expect, it } from 'vitest';
import { openBlobStore } from '../storage/open.js';
import type { S3BlobStore } from '../storage/s3-store.js';
import { describeBlobStore, patternBytes } from './blob-store-suite.js';
import { uniqueS3Uri } from './services-env.js';

describeBlobStore('S3 on SeaweedFS', () => openBlobStore(uniqueS3Uri('contract')), (ctx) => {
  it('uploads large objects as multipart (the ETag carries the part count)', async () => {
    const store = ctx.store as S3BlobStore;
    await store.put('mp/put.bin', patternBytes(20 * 1024 * 1024, 11));
    expect((await store.head('mp/put.bin')).etag).toMatch(/-3"?$/);
    await store.put('mp/small.bin', patternBytes(1024, 11));
    expect((await store.head('mp/small.bin')).etag).not.toMatch(/-\d+"?$/);
    // The 64 MiB stream from the shared suite: 8 parts of 8 MiB.
    expect((await store.head('big/stream.bin')).etag).toMatch(/-8"?$/);
  });
});

describe('S3 store addressing', () => {
  it('keeps objects under its prefix: a sibling prefix sees none of them', async () => {
    const base = uniqueS3Uri('prefix');
    const a = await openBlobStore(`${base}/a`);
    const b = await openBlobStore(`${base}/ab`);
    await a.put('x', new Uint8Array([1]));
    expect(await b.list('')).toEqual([]);
    expect(await a.list('')).toEqual([{ key: 'x', bytes: 1 }]);
    await a.close();
    await b.close();
  });
});
