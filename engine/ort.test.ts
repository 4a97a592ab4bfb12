// Provenance for checkpoints and units: the ONNX Runtime version is the installed package's, the CPU model
// is named, and the dispatch features are this machine's own flags.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { expect, it } from 'vitest';
import { DISPATCH_FEATURES } from './fingerprint.js';
import { runtimeFingerprint, runtimeInfo } from './ort.js';

it('runtimeInfo names the installed onnxruntime-node version, this CPU and its dispatch features', () => {
  const manifest = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
  const { version } = JSON.parse(readFileSync(manifest, 'utf8')) as { version: string };
  const info = runtimeInfo();
  console.log(`runtime: ${JSON.stringify(info)}`);
  expect(info.onnxruntimeVersion).toBe(version);
  expect(info.cpuModel).toBe(cpus()[0]!.model.trim());
  expect(info.cpuModel.length).toBeGreaterThan(0);
  expect(info.arch).toBe(process.arch);
  if (process.platform === 'linux' && DISPATCH_FEATURES[process.arch]) {
    const flags = new Set(readFileSync('/proc/cpuinfo', 'utf8').match(/^(?:flags|Features)\s*:(.*)$/m)![1]!.trim().split(/\s+/));
    expect(info.cpuFeatures).toEqual(DISPATCH_FEATURES[process.arch]!.filter((f) => flags.has(f)));
  }
  expect(runtimeFingerprint({ intraOpThreads: 3, executionProvider: 'cpu' })).toEqual({ ...info, intraOpThreads: 3, executionProvider: 'cpu' });
});
