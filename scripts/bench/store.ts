// `npm run bench:store`: upload and download throughput of one 256 MiB checkpoint file, to the local
// directory store and to S3 (the SeaweedFS from `services:up`, or any --s3 URI). Prints figures only.
import { createHash, randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import type { BlobStore } from '../../storage/blob-store.js';
import { openBlobStore } from '../../storage/open.js';
import { positiveIntegerFlag } from './flags.js';
import { servicesConfig } from '../services/dev-services.js';
import { loadServicesEnv } from '../../workers/services-env.js';

const HELP = `usage: npm run bench:store -- [--mib 256] [--repeats 3] [--dir PATH] [--s3 s3://bucket/prefix] [--skip-s3]

Times put/get (whole buffer, as commitCheckpoint does) and putStream/getStream of one file, per store,
and prints the median MB/s (1 MB = 10^6 bytes) of --repeats runs. Download times include the sha256
check of what was read back.
Default directory: <data folder>/bench (.data, or $DRO_DATA_DIR); default S3: the local SeaweedFS from \`npm run services:up\`.`;

const MiB = 1024 * 1024;

async function timed(fn: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function benchStore(name: string, store: BlobStore, data: Uint8Array, digest: string, repeats: number): Promise<void> {
  const key = 'bench/model.safetensors';
  const rows: Record<string, number[]> = { put: [], get: [], putStream: [], getStream: [] };
  const check = (hash: string): void => {
    if (hash !== digest) throw new Error(`${name}: sha256 of the object read back differs from what was written`);
  };
  for (let i = 0; i < repeats; i++) {
    await store.delete(key);
    rows.put!.push(await timed(() => store.put(key, data)));
    rows.get!.push(await timed(async () => check(createHash('sha256').update(await store.get(key)).digest('hex'))));
    await store.delete(key);
    const chunk = 4 * MiB;
    const source = Readable.from((function* () {
      for (let off = 0; off < data.byteLength; off += chunk) yield data.subarray(off, off + chunk);
    })());
    rows.putStream!.push(await timed(async () => void (await store.putStream(key, source))));
    rows.getStream!.push(
      await timed(async () => {
        const hash = createHash('sha256');
        for await (const part of await store.getStream(key)) hash.update(part as Uint8Array);
        check(hash.digest('hex'));
      }),
    );
  }
  await store.delete(key);
  const mb = data.byteLength / 1e6;
  const fmt = (op: string): string => `${op} ${(mb / median(rows[op]!)).toFixed(0).padStart(5)} MB/s`;
  console.log(`${name.padEnd(34)} upload: ${fmt('put')}, ${fmt('putStream')}   download: ${fmt('get')}, ${fmt('getStream')}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      mib: { type: 'string', default: '256' },
      repeats: { type: 'string', default: '3' },
      dir: { type: 'string' },
      s3: { type: 'string' },
      'skip-s3': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const mib = positiveIntegerFlag(values.mib, '--mib');
  const repeats = positiveIntegerFlag(values.repeats, '--repeats');

  const data = new Uint8Array(randomBytes(mib * MiB));
  const digest = createHash('sha256').update(data).digest('hex');
  console.log(`file: ${mib} MiB (${data.byteLength} bytes), median of ${repeats} runs, sha256 checked on every read`);

  const dir = values.dir ?? join(servicesConfig().dataDir, 'bench');
  const dirStore = await openBlobStore(dir);
  await benchStore(`directory ${dir}`, dirStore, data, digest, repeats);
  if (!values.dir) await rm(dir, { recursive: true, force: true });

  if (!values['skip-s3']) {
    let uri = values.s3;
    if (!uri) {
      const vars = loadServicesEnv({ override: true });
      if (!vars?.DRO_S3_URI) throw new Error('no local S3: run `npm run services:up` first, or pass --s3 s3://bucket/prefix or --skip-s3');
      uri = `${vars.DRO_S3_URI}/bench`;
    }
    const s3 = await openBlobStore(uri);
    await benchStore(`S3 ${uri}${process.env.AWS_ENDPOINT_URL_S3 ? ` (${process.env.AWS_ENDPOINT_URL_S3})` : ''}`, s3, data, digest, repeats);
    await s3.close();
  }
}

main().catch((err: unknown) => {
  console.error(`bench:store: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
