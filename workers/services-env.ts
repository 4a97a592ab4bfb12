// Reads the env file `npm run services:up` writes, so workers, the CLI and tests find the local services
// (here, beside the worker's connection, so no worker code reaches into the dev tools in scripts/).
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Parses KEY=VALUE lines; '#' starts a comment line. A malformed line is an error naming file and line. */
export function parseEnvFile(text: string, file: string): Record<string, string> {
  const out: Record<string, string> = {};
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!match) throw new Error(`${file}:${index + 1}: expected KEY=VALUE`);
    out[match[1]!] = match[2]!;
  });
  return out;
}

export function defaultServicesEnvFile(env: NodeJS.ProcessEnv = process.env): string {
  const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  return join(resolve(env.DRO_DATA_DIR || join(repoRoot, '.data')), 'services.env');
}

/**
 * Copies the services env file into process.env. With `override: false` (the CLI's choice) variables
 * the user already set win; tests pass `override: true` so they always talk to the local services.
 * Returns the variables read, or undefined when there is no env file (services never started).
 */
export function loadServicesEnv(options: { override: boolean; file?: string }): Record<string, string> | undefined {
  const file = options.file ?? defaultServicesEnvFile();
  if (!existsSync(file)) return undefined;
  const vars = parseEnvFile(readFileSync(file, 'utf8'), file);
  for (const [key, value] of Object.entries(vars)) {
    if (options.override || process.env[key] === undefined) process.env[key] = value;
  }
  return vars;
}
