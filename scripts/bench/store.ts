// `npm run bench:store`: upload and download throughput of one 256 MiB checkpoint file, to the local
// directory store and to S3 (the SeaweedFS from `services:up`, or any --s3 URI). Prints figures only.
import { createHash, randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { BlobStore } from '../../storage/blob-store.js';
import { openBlobStore } from '../../storage/open.js';
import { integerOption, textOption } from '../../cli/options.js';
import { runScript, scriptProgram } from '../lib/command-line.js';
import { servicesConfig } from '../services/dev-services.js';
import { loadServicesEnv } from '../../workers/services-env.js';

const DETAILS = `
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

interface Options {
  mib: number;
  repeats: number;
  dir?: string;
  s3?: string;
  skipS3?: boolean;
}

async function main({ mib, repeats, dir: dirFlag, s3: s3Flag, skipS3 }: Options): Promise<void> {
  const data = new Uint8Array(randomBytes(mib * MiB));
  const digest = createHash('sha256').update(data).digest('hex');
  console.log(`file: ${mib} MiB (${data.byteLength} bytes), median of ${repeats} runs, sha256 checked on every read`);

  const dir = dirFlag ?? join(servicesConfig().dataDir, 'bench');
  const dirStore = await openBlobStore(dir);
  await benchStore(`directory ${dir}`, dirStore, data, digest, repeats);
  if (!dirFlag) await rm(dir, { recursive: true, force: true });

  if (!skipS3) {
    let uri = s3Flag;
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

const program = scriptProgram('bench:store')
  .description('Upload and download throughput of one checkpoint file, to the local directory store and to S3 (the SeaweedFS from `services:up`, or any --s3 URI).')
  .addOption(integerOption('--mib <n>', 'file size in MiB', 1).default(256))
  .addOption(integerOption('--repeats <n>', 'runs per figure', 1).default(3))
  .addOption(textOption('--dir <path>', 'directory store to time (default: <data folder>/bench, removed afterwards)'))
  .addOption(textOption('--s3 <uri>', 'S3 store to time, s3://bucket/prefix (default: the local SeaweedFS)'))
  .option('--skip-s3', 'time the directory store only')
  .addHelpText('after', DETAILS)
  .action(main);
runScript('bench:store', program);
