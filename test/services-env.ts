// Test helper: the local services' coordinates, read from the env file `services:up` writes.
import { loadServicesEnv } from '../scripts/services/env-file.js';

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
