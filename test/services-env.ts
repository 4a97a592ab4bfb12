// Test helper: the local services' coordinates, read from the env file `services:up` writes, and the
// two kinds of store a storage test runs against.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { loadServicesEnv } from '../workers/services-env.js';

export interface LocalServices {
  temporalAddress: string;
  s3Uri: string;
  s3Endpoint: string;
}

/** Loads the services env file into process.env (overriding), or fails saying how to start them. */
export function localServices(): LocalServices {
  const vars = loadServicesEnv({ override: true });
  if (!vars?.TEMPORAL_ADDRESS || !vars.DRO_S3_URI || !vars.AWS_ENDPOINT_URL_S3) {
    throw new Error('local services env file not found or incomplete: run `npm run services:up` (npm test starts them itself)');
  }
  return { temporalAddress: vars.TEMPORAL_ADDRESS, s3Uri: vars.DRO_S3_URI, s3Endpoint: vars.AWS_ENDPOINT_URL_S3 };
}

/** A fresh prefix in the dev bucket so tests never see each other's objects. */
export function uniqueS3Uri(label: string): string {
  const { s3Uri } = localServices();
  return `${s3Uri.replace(/\/+$/, '')}/test/${label}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * For `describe.each`: a directory store (a temp folder, removed after the file's tests) and S3 on the
 * local SeaweedFS (a fresh prefix), each as a function making a new store URI.
 */
export function storeKinds(label: string): [string, () => Promise<string>][] {
  const roots: string[] = [];
  afterAll(async () => {
    for (const root of roots) await rm(root, { recursive: true, force: true });
  });
  return [
    [
      'directory',
      async () => {
        const root = await mkdtemp(join(tmpdir(), `dro-${label}-`));
        roots.push(root);
        return root;
      },
    ],
    ['S3 on SeaweedFS', () => Promise.resolve(uniqueS3Uri(label))],
  ];
}
