// llama.cpp (through node-llama-cpp 3.21.1, a dev dependency) as an independent implementation of the
// same GGUF: its tokenizer, its teacher-forced next-token distributions and its greedy choices, for the
// cross-check tests and for `npm run bench:versus`. Always the prebuilt CPU binary shipped in the
// package: nothing is built or downloaded.
import { open, writeFile } from 'node:fs/promises';
import { getLlama, LlamaLogLevel, type Llama, type LlamaContext, type LlamaModel, type Token } from 'node-llama-cpp';
import { encodeGguf, GgufReader, type GgufTensorToWrite } from '../../engine/index.js';

const GGML_F32 = 0;

export interface LlamaCppModel {
  readonly llama: Llama;
  readonly model: LlamaModel;
  /** Token ids of `text`; special-token text (e.g. <|im_start|>) becomes its special id, as in our Hugging Face tokenizers. No BOS is added. */
  tokenize(text: string): number[];
  /**
   * For each t ≥ 1, the log-probability llama.cpp gives ids[t] after ids[0..t-1] (the full softmax at
   * temperature 1), and its most likely token there.
   */
  teacherForced(ids: readonly number[]): Promise<{ logprobs: number[]; top1: number[] }>;
  /** `n` greedy tokens after `promptIds`. */
  greedy(promptIds: readonly number[], n: number): Promise<number[]>;
  /** A context with `sequences` parallel sequences of `contextSize` tokens each (for benchmarks). */
  context(sequences: number, contextSize: number): Promise<LlamaContext>;
  dispose(): Promise<void>;
}

// The full distribution: node-llama-cpp's sampler otherwise truncates to its default top-k before normalising.
const FULL = { temperature: 1, topK: 0, topP: 1, minP: 0 } as const;

export interface LlamaCppOptions {
  threads?: number;
  /** llama.cpp keeps its KV cache in F16 unless told otherwise; F32 for comparisons at float32 precision. */
  kvCache?: 'F16' | 'F32';
}

export async function openLlamaCpp(ggufPath: string, { threads = 2, kvCache = 'F16' }: LlamaCppOptions = {}): Promise<LlamaCppModel> {
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: ggufPath });
  const contexts: LlamaContext[] = [];
  const context = async (sequences: number, contextSize: number): Promise<LlamaContext> => {
    const ctx = await model.createContext({
      sequences,
      contextSize: contextSize * sequences,
      threads,
      batchSize: Math.min(2048, contextSize * sequences),
      experimentalKvCacheKeyType: kvCache,
      experimentalKvCacheValueType: kvCache,
      flashAttention: kvCache === 'F32' ? false : 'auto',
    });
    contexts.push(ctx);
    return ctx;
  };
  return {
    llama,
    model,
    tokenize: (text) => [...model.tokenize(text, true)],
    async teacherForced(ids) {
      const ctx = await context(1, Math.max(64, ids.length + 8));
      try {
        const out = await ctx.getSequence().controlledEvaluate(ids.map((id, t) => (t + 1 < ids.length ? [id as Token, { generateNext: { probabilities: true, options: FULL } }] : (id as Token))));
        const logprobs: number[] = [];
        const top1: number[] = [];
        for (let t = 0; t + 1 < ids.length; t++) {
          const p = out[t]?.next.probabilities;
          if (!p) throw new Error(`llama.cpp returned no distribution at position ${t}`);
          let best = -1;
          let bestP = -1;
          for (const [token, prob] of p) if (prob > bestP) [best, bestP] = [token, prob];
          logprobs.push(Math.log(p.get(ids[t + 1] as Token) ?? 0));
          top1.push(best);
        }
        return { logprobs, top1 };
      } finally {
        await ctx.dispose();
        contexts.splice(contexts.indexOf(ctx), 1);
      }
    },
    async greedy(promptIds, n) {
      const ctx = await context(1, promptIds.length + n + 8);
      try {
        const sequence = ctx.getSequence();
        const out: number[] = [];
        let input: number[] = [...promptIds];
        while (out.length < n) {
          const last = input.length - 1;
          const result = await sequence.controlledEvaluate(input.map((id, i) => (i === last ? [id as Token, { generateNext: { token: true, options: { temperature: 0 } } }] : (id as Token))));
          const token = result[last]?.next.token;
          if (token === undefined || token === null) throw new Error('llama.cpp produced no token');
          out.push(token);
          input = [token];
        }
        return out;
      } finally {
        await ctx.dispose();
        contexts.splice(contexts.indexOf(ctx), 1);
      }
    },
    context,
    async dispose() {
      for (const ctx of contexts.splice(0)) await ctx.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}

/**
 * Writes a copy of a GGUF file with every tensor dequantised to F32 (metadata carried over byte for byte),
 * so llama.cpp and this engine can be compared on identical float32 weights, without the activation
 * quantisation llama.cpp applies in quantised matmuls.
 */
export async function writeF32Copy(src: string, dst: string): Promise<void> {
  const reader = await GgufReader.open(src);
  try {
    const { header } = reader;
    const { start, end, count } = header.metadataSpan;
    const raw = new Uint8Array(end - start);
    const file = await open(src, 'r');
    await file.read(raw, 0, raw.length, start).finally(() => file.close());
    const tensors: GgufTensorToWrite[] = [];
    for (const t of header.tensors) {
      const data = await reader.read(t.name);
      tensors.push({ name: t.name, dims: t.dims, typeId: GGML_F32, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    }
    await writeFile(dst, encodeGguf({ bytes: raw, count }, tensors, header.alignment));
  } finally {
    await reader.close();
  }
}
