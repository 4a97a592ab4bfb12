// Provenance for checkpoints: the ONNX Runtime version is the installed package's, and the CPU model is named.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { expect, it } from 'vitest';
import { runtimeInfo } from './ort.js';

it('runtimeInfo names the installed onnxruntime-node version and this CPU', () => {
  const manifest = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
  const { version } = JSON.parse(readFileSync(manifest, 'utf8')) as { version: string };
  const info = runtimeInfo();
  console.log(`runtime: ${JSON.stringify(info)}`);
  expect(info.onnxruntimeVersion).toBe(version);
  expect(info.cpuModel).toBe(cpus()[0]!.model.trim());
  expect(info.cpuModel.length).toBeGreaterThan(0);
});
