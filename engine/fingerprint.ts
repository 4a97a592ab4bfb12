// The runtime fingerprint: what a computation's bits depend on beyond its inputs. ONNX Runtime's CPU
// kernels (MLAS) choose their code path once per process from the CPU's instruction-set extensions
// (AVX2/FMA, AVX-512 core, AVX-512 VNNI, AVX-VNNI, AMX; on Arm dot-product, i8mm, SVE), so two machines
// agree bit for bit when their ONNX Runtime version, dispatch features, thread count and provider
// agree, whatever their CPU model's name ("AMD EPYC" names AVX2-only and AVX-512 machines alike).

/** The instruction-set flags (as Linux's /proc/cpuinfo names them) that MLAS's dispatch reads. */
export const DISPATCH_FEATURES: Readonly<Record<string, readonly string[]>> = {
  x64: ['avx', 'fma', 'f16c', 'avx2', 'avx512f', 'avx512bw', 'avx512dq', 'avx512vl', 'avx512_vnni', 'avx512_bf16', 'avx512_fp16', 'avx_vnni', 'avx_vnni_int8', 'avx_ne_convert', 'amx_tile', 'amx_int8', 'amx_bf16'],
  arm64: ['asimd', 'asimdhp', 'asimddp', 'i8mm', 'bf16', 'sve', 'sve2', 'sme'],
};

/**
 * The dispatch features among a /proc/cpuinfo text's flags (x64: the "flags" line; arm64: "Features"),
 * in DISPATCH_FEATURES' order; null when the text names none (another OS, or an unknown architecture).
 */
export function dispatchFeatures(cpuinfo: string, arch: string): string[] | null {
  const wanted = DISPATCH_FEATURES[arch];
  const line = cpuinfo.split('\n').find((l) => /^(flags|Features)\s*:/.test(l));
  if (!wanted || !line) return null;
  const flags = new Set(line.slice(line.indexOf(':') + 1).trim().split(/\s+/));
  return wanted.filter((f) => flags.has(f));
}

export interface RuntimeFingerprint {
  onnxruntimeVersion: string;
  /** The CPU's model name, for people; the bits follow `cpuFeatures`. */
  cpuModel: string;
  /** process.arch. */
  arch: string;
  /** DISPATCH_FEATURES present on this CPU; null where they cannot be read (not Linux). */
  cpuFeatures: string[] | null;
  intraOpThreads: number;
  executionProvider: string;
}

/** One line naming everything the bits depend on, e.g. "x64 avx2+avx512f+… · ONNX Runtime 1.30.0 · 2 threads · cpu". */
export function fingerprintId(f: RuntimeFingerprint): string {
  const features = f.cpuFeatures === null ? `"${f.cpuModel}" (features unknown)` : f.cpuFeatures.length > 0 ? f.cpuFeatures.join('+') : 'no vector extensions';
  return `${f.arch} ${features} · ONNX Runtime ${f.onnxruntimeVersion} · ${f.intraOpThreads} thread${f.intraOpThreads === 1 ? '' : 's'} · ${f.executionProvider}`;
}

/** Older records lack arch and features: those compare by the CPU model alone. */
export type RecordedFingerprint = Omit<RuntimeFingerprint, 'arch' | 'cpuFeatures'> & Partial<Pick<RuntimeFingerprint, 'arch' | 'cpuFeatures'>>;

/**
 * What differs between a recorded fingerprint and this one that can change results, one sentence each
 * (empty: the same bits are expected).
 */
export function fingerprintDifferences(then: RecordedFingerprint, now: RuntimeFingerprint): string[] {
  const notes: string[] = [];
  const known = then.cpuFeatures !== undefined && then.cpuFeatures !== null && now.cpuFeatures !== null;
  if (then.arch !== undefined && then.arch !== now.arch) notes.push(`the CPU architecture differs (${then.arch}, here ${now.arch})`);
  else if (known) {
    const a = then.cpuFeatures!.join('+');
    const b = now.cpuFeatures!.join('+');
    if (a !== b) notes.push(`the CPU's instruction-set extensions differ ("${then.cpuModel}" with ${a || 'none'}, here "${now.cpuModel}" with ${b || 'none'}), so ONNX Runtime runs other kernels`);
  } else if (then.cpuModel !== now.cpuModel) notes.push(`the CPU differs ("${then.cpuModel}", here "${now.cpuModel}")`);
  if (then.onnxruntimeVersion !== now.onnxruntimeVersion) notes.push(`the ONNX Runtime version differs (${then.onnxruntimeVersion}, here ${now.onnxruntimeVersion})`);
  if (then.intraOpThreads !== now.intraOpThreads) notes.push(`the intra-op thread count differs (${then.intraOpThreads}, here ${now.intraOpThreads})`);
  if (then.executionProvider !== now.executionProvider) notes.push(`the execution provider differs (${then.executionProvider}, here ${now.executionProvider})`);
  return notes;
}
