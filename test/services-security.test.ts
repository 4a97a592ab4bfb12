// The local SeaweedFS guards its data with the generated S3 secret: its filer's HTTP API (S3 port + 3)
// refuses unsigned reads and writes, so nothing can be planted or read around the authenticated S3
// gateway, and every file and folder it writes is private to its user.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BlobNotFoundError } from '../storage/blob-store.js';
import { openBlobStore } from '../storage/open.js';
import { privateServices, type PrivateServices } from './training-harness.js';

let services: PrivateServices;
beforeAll(async () => {
  services = await privateServices('security', ['s3']);
}, 180_000);
afterAll(async () => {
  await services?.dispose();
}, 60_000);

it("the filer's HTTP API takes no unsigned write or read; the S3 API still works", async () => {
  const { cfg } = services;
  const store = await openBlobStore(`${services.env.DRO_S3_URI}/sec`);
  await store.put('real.txt', new TextEncoder().encode('through S3'));
  const filer = `http://127.0.0.1:${cfg.s3.filerPort}/buckets/${cfg.s3.bucket}/sec`;
  const planted = await fetch(`${filer}/planted.txt`, { method: 'PUT', body: 'planted around the gateway' });
  expect(planted.status, await planted.text()).toBeGreaterThanOrEqual(400);
  await expect(store.get('planted.txt')).rejects.toBeInstanceOf(BlobNotFoundError);
  const read = await fetch(`${filer}/real.txt`);
  expect(read.status).toBeGreaterThanOrEqual(400);
  expect(await read.text()).not.toContain('through S3');
  expect(new TextDecoder().decode(await store.get('real.txt'))).toBe('through S3');
  await store.close();
});

it('the SeaweedFS data is private to its user: every folder 0700, the data files unreadable by others', async () => {
  const root = services.cfg.s3.dir;
  const open: string[] = [];
  let dataFiles = 0;
  for (const rel of ['', ...(await readdir(root, { recursive: true }))]) {
    const s = await stat(join(root, rel));
    // weed chmods its small .vif volume-info files to 0644 itself; inside 0700 folders nobody else reaches them.
    if (s.isFile() && rel.endsWith('.vif')) continue;
    if (s.isFile() && /\.(dat|idx)$/.test(rel)) dataFiles++;
    if ((s.mode & 0o077) !== 0) open.push(`${rel || '.'} ${(s.mode & 0o777).toString(8)}`);
  }
  expect(dataFiles).toBeGreaterThan(0);
  expect(open).toEqual([]);
});
