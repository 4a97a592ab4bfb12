// The fields a resume may change: every listed field exists in the schema, the table of fields says which
// a resume may change, and a plan puts the new values in force from the resumed step (hyper-parameters as
// a change from that step, the rest in the config), refusing every other field by name.
import { describe, expect, it } from 'vitest';
import { configDifferences, parseRunConfig, runConfigFieldDocs, type RunConfigInput } from './config.js';
import { configAt, HYPERPARAMETERS } from './hyperparameters.js';
import { describeConfigChange, isResumable, planResume, RESUMABLE_FIELDS, ResumeConfigError, unresumableDifferences } from './resumable.js';

const saved = parseRunConfig({ seed: 4, rollout: { batchSequences: 8 }, optimizer: { learningRate: 1e-4 }, checkpoint: { every: 2, keepLast: 2 }, schedule: { totalSteps: 10 } });
const edited = (input: RunConfigInput) => parseRunConfig({ seed: 4, rollout: { batchSequences: 8 }, optimizer: { learningRate: 1e-4 }, checkpoint: { every: 2, keepLast: 2 }, schedule: { totalSteps: 10 }, ...input });

describe('RESUMABLE_FIELDS', () => {
  it('names only fields and sections the run config has', () => {
    const fields = runConfigFieldDocs().map((f) => f.path);
    for (const entry of RESUMABLE_FIELDS) {
      const known = entry.endsWith('.*') ? fields.some((f) => f.startsWith(entry.slice(0, -1))) : fields.includes(entry);
      expect(known, entry).toBe(true);
    }
  });

  it('includes every field a live run lets `dro set` change', () => {
    for (const h of Object.values(HYPERPARAMETERS)) expect(isResumable(h.field), h.field).toBe(true);
  });
});

describe('isResumable', () => {
  it.each([
    ['rollout.batchSequences', true],
    ['update.microBatchTokens', true],
    ['orchestration.heartbeatSeconds', true],
    ['orchestration.maxAttemptsPerStep', true],
    ['checkpoint.keepLast', true],
    ['checkpoint.keepEvery', true],
    ['model.intraOpThreads', true],
    ['optimizer.learningRate', true],
    ['dro.klBeta', true],
    ['rollout.temperature', true],
    ['evaluation.every', true],
    ['seed', false],
    ['model.path', false],
    ['model.init.hidden_size', false],
    ['model.loraRank', false],
    ['data.synthetic.trainCount', false],
    ['rollout.groupSize', false],
    ['rollout.batchSequencesX', false],
    ['orchestrationX.heartbeatSeconds', false],
    ['dro.r3.weighting', false],
    ['optimizer.beta2', false],
    ['schedule.totalSteps', false],
    ['checkpoint.store', false],
    ['checkpoint.every', false],
    ['evaluation.examples', false],
    ['filtering.every', false],
    ['sft.steps', false],
  ] as const)('%s: %s', (path, resumable) => {
    expect(isResumable(path)).toBe(resumable);
  });
});

describe('planResume', () => {
  it('changes nothing for the checkpoint’s own config', () => {
    expect(planResume(saved, edited({}), 5)).toEqual({ config: saved, hyperparameters: null, change: null });
  });

  it('puts changed operational fields in the config and records them', () => {
    const plan = planResume(saved, edited({ rollout: { batchSequences: 4 }, orchestration: { maxAttemptsPerStep: 5, heartbeatSeconds: 3 } }), 5);
    expect(plan.config.rollout).toEqual({ ...saved.rollout, batchSequences: 4 });
    expect(plan.config.orchestration).toEqual({ ...saved.orchestration, maxAttemptsPerStep: 5, heartbeatSeconds: 3 });
    expect(configDifferences(saved, plan.config)).toEqual(['orchestration.heartbeatSeconds', 'orchestration.maxAttemptsPerStep', 'rollout.batchSequences']);
    expect(plan.hyperparameters).toBeNull();
    expect(plan.change).toEqual({
      fromStep: 5,
      fields: { 'orchestration.heartbeatSeconds': { before: 10, after: 3 }, 'orchestration.maxAttemptsPerStep': { before: 3, after: 5 }, 'rollout.batchSequences': { before: 8, after: 4 } },
    });
    // The checkpoint's config is left as it was.
    expect(saved.rollout.batchSequences).toBe(8);
  });

  it('turns changed hyper-parameters into a change from the resumed step, so the steps before keep their values', () => {
    const given = edited({ optimizer: { learningRate: 2e-4 }, dro: { klBeta: 0.01 }, evaluation: { every: 4 }, checkpoint: { every: 2, keepLast: 5 } });
    const plan = planResume(saved, given, 7);
    expect(plan.hyperparameters).toEqual({ fromStep: 7, learningRate: 2e-4, klBeta: 0.01, evaluationEvery: 4 });
    expect(plan.config.optimizer.learningRate).toBe(1e-4);
    expect(plan.config.checkpoint.keepLast).toBe(5);
    // From the resumed step the run computes with exactly the given config; before it, with the checkpoint's.
    expect(configAt(plan.config, [plan.hyperparameters!], 7)).toEqual(given);
    expect(configAt(plan.config, [plan.hyperparameters!], 6)).toEqual({ ...saved, checkpoint: given.checkpoint });
    expect(Object.keys(plan.change!.fields)).toEqual(['checkpoint.keepLast', 'dro.klBeta', 'evaluation.every', 'optimizer.learningRate']);
  });

  it('keeps the hyper-parameters in force when the file leaves them at the checkpoint config’s value or at the value in force', () => {
    const accepted = [{ fromStep: 3, learningRate: 2e-4 }];
    // The file from before `dro set`: the steering stays.
    expect(planResume(saved, edited({}), 7, accepted).change).toBeNull();
    expect(planResume(saved, edited({ optimizer: { learningRate: 2e-4 } }), 7, accepted).change).toBeNull();
    const plan = planResume(saved, edited({ optimizer: { learningRate: 3e-4 } }), 7, accepted);
    expect(plan.change).toEqual({ fromStep: 7, fields: { 'optimizer.learningRate': { before: 2e-4, after: 3e-4 } } });
    expect(configAt(plan.config, [...accepted, plan.hyperparameters!], 7).optimizer.learningRate).toBe(3e-4);
    // A change accepted for a later step is not in force at the resumed step.
    expect(planResume(saved, edited({ optimizer: { learningRate: 2e-4 } }), 7, [{ fromStep: 9, learningRate: 2e-4 }]).change?.fields).toEqual({ 'optimizer.learningRate': { before: 1e-4, after: 2e-4 } });
  });

  it('refuses every field a resume cannot change, naming each (and the fields it may change)', () => {
    const given = edited({ seed: 5, rollout: { batchSequences: 4, groupSize: 2 }, model: { init: { ...saved.model.init, hidden_size: 32 } } });
    expect(unresumableDifferences(saved, given)).toEqual(['model.init.hidden_size', 'rollout.groupSize', 'seed']);
    let caught: unknown;
    try {
      planResume(saved, given, 3);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ResumeConfigError);
    expect((caught as ResumeConfigError).fields).toEqual(['model.init.hidden_size', 'rollout.groupSize', 'seed']);
    expect((caught as Error).message).toMatch(/^a resume cannot change model\.init\.hidden_size, rollout\.groupSize, seed \(a checkpoint means something only under their value\); it may change rollout\.batchSequences, update\.microBatchTokens, orchestration\.\*, /);
    expect(() => planResume(saved, edited({ checkpoint: { every: 2, keepLast: 2, store: '/elsewhere' } }), 3)).toThrow(/^a resume cannot change checkpoint\.store \(a checkpoint means something only under its value\)/);
  });
});

describe('describeConfigChange', () => {
  it('says each field, its value before and after', () => {
    expect(describeConfigChange({ fromStep: 3, fields: { 'rollout.batchSequences': { before: 8, after: 4 }, 'model.executionProvider': { before: 'cpu', after: 'cuda' } } })).toBe(
      'rollout.batchSequences 8 → 4, model.executionProvider "cpu" → "cuda"',
    );
  });
});
