// Evaluates a committed checkpoint on the held-out examples, in an engine of its own (never a training
// run's state), and stores the result at <runId>/evaluations/<step>.json. A step already evaluated
// returns the stored result and computes nothing.
import { EngineClient } from '../engine/runtime/engine-client.js';
import { loadCheckpoint } from '../storage/checkpoints.js';
import { readJsonIfExists, seconds, withHeartbeat, writeJson, type StoreOpener } from './context.js';
import { runKeys } from './keys.js';
import { versionOf } from './policy-host.js';
import { runData } from './run-data.js';
import { generateInPlan } from './training-step.js';
import type { EvaluationSummary, RunRef } from './types.js';

export function createEvaluationActivities(deps: { openStore: StoreOpener }) {
  async function evaluateCheckpoint(run: RunRef, input: { step: number }): Promise<EvaluationSummary> {
    const started = performance.now();
    const { config } = run;
    const store = await deps.openStore(config.checkpoint.store);
    const key = runKeys.evaluation(run.runId, input.step);
    const stored = await readJsonIfExists<EvaluationSummary & { predictions?: unknown }>(store, key);
    if (stored) {
      // The stored record also holds every prediction; the activity's answer stays the small summary.
      const { predictions: _predictions, ...summary } = stored;
      return { ...summary, cached: true };
    }
    const data = await runData(config, run.configHash);
    return withHeartbeat(async (progress) => {
      const checkpoint = await loadCheckpoint(store, run.runId, input.step, { signal: progress.signal });
      const engine = await EngineClient.start({ kind: 'init', config: data.modelConfig, seed: config.seed }, { intraOpThreads: config.model.intraOpThreads, executionProvider: config.model.executionProvider });
      try {
        await engine.loadState({ parameters: checkpoint.files['model.safetensors']!, optimizer: null, reference: null, tag: versionOf(run, input.step) });
        const examples = data.eval.slice(0, config.evaluation.examples);
        // The same keys for every checkpoint, so evaluations of one run differ only by the weights.
        const requests = examples.map((e) => ({ promptIds: data.promptIds(e), key: { seed: `${config.seed}/eval`, step: 0, exampleId: e.id, sampleIndex: 0 } }));
        const sampling = { temperature: config.evaluation.temperature, topP: 1, maxNewTokens: config.evaluation.maxNewTokens, stopTokenIds: [data.eos] };
        const results = await generateInPlan(engine, requests, sampling, config.rollout.batchSequences, progress);
        const predictions = examples.map((e, i) => ({ exampleId: e.id, completions: [data.tokenizer.decode(results[i]!.ids, { skipSpecialTokens: true })] }));
        const summary: EvaluationSummary = { step: input.step, metrics: data.task.metrics(predictions, examples), examples: examples.length, cached: false, seconds: seconds(started) };
        await writeJson(store, key, { ...summary, predictions });
        return summary;
      } finally {
        await engine.dispose();
      }
    });
  }
  return { evaluateCheckpoint };
}
