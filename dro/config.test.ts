// The run config: defaults, nesting, every error naming its field, docs for every field, canonical JSON.
import { describe, expect, it } from 'vitest';
import { DEFAULT_ADVANTAGE_OPTIONS } from './advantages.js';
import { canonicalJson, configDifferences, DEFAULT_INIT_MODEL, parseRunConfig, RunConfigError, RunConfigSchema, runConfigFieldDocs, runConfigMarkdownTable, unknownFieldPath } from './config.js';
import { DEFAULT_DATA_FILTER_OPTIONS } from './data-filter.js';
import { DEFAULT_GRPO_LOSS_OPTIONS } from './grpo.js';
import { DEFAULT_R3_OPTIONS, resolveR3Options } from './r3.js';

function problems(input: unknown): string[] {
  try {
    parseRunConfig(input);
  } catch (err) {
    expect(err).toBeInstanceOf(RunConfigError);
    return (err as RunConfigError).problems;
  }
  throw new Error('expected the config to be rejected');
}

describe('parseRunConfig defaults', () => {
  it('fills every section from nothing, with the same defaults the functions use', () => {
    const c = parseRunConfig({});
    expect(parseRunConfig(undefined)).toEqual(c);
    expect(c.seed).toBe(0);
    expect(c.model).toEqual({ path: null, init: { ...DEFAULT_INIT_MODEL }, tokenizer: 'auto', executionProvider: 'cpu', intraOpThreads: 2, loraRank: 0, loraAlpha: 32, loraTargets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] });
    expect(c.dro.r3).toEqual({ ...DEFAULT_R3_OPTIONS });
    expect(resolveR3Options(c.dro.r3)).toEqual(c.dro.r3);
    expect(c.dro.advantageScale).toBe(DEFAULT_ADVANTAGE_OPTIONS.scale);
    expect([c.dro.epsilonLow, c.dro.epsilonHigh, c.dro.klBeta, c.dro.aggregation, c.dro.maskTruncated]).toEqual([
      DEFAULT_GRPO_LOSS_OPTIONS.epsilonLow,
      DEFAULT_GRPO_LOSS_OPTIONS.epsilonHigh,
      DEFAULT_GRPO_LOSS_OPTIONS.klBeta,
      DEFAULT_GRPO_LOSS_OPTIONS.aggregation,
      DEFAULT_GRPO_LOSS_OPTIONS.maskTruncated,
    ]);
    expect(c.filtering).toMatchObject({
      worstTokenShare: DEFAULT_DATA_FILTER_OPTIONS.worstTokenShare,
      maxRank: DEFAULT_DATA_FILTER_OPTIONS.maxRank,
      dropShare: DEFAULT_DATA_FILTER_OPTIONS.dropShare,
      carryShare: DEFAULT_DATA_FILTER_OPTIONS.carryShare,
    });
    expect(c.checkpoint).toEqual({ store: 'runs', every: 10, keepLast: 3, keepEvery: 0 });
  });

  it('keeps the defaults beside a partial override, at any depth', () => {
    const c = parseRunConfig({ seed: 7, dro: { r3: { weighting: 'softmax', temperature: 0.5 } }, model: { path: '/models/smol' } });
    expect(c.seed).toBe(7);
    expect(c.dro.r3).toEqual({ ...DEFAULT_R3_OPTIONS, weighting: 'softmax', temperature: 0.5 });
    expect(c.dro.reward).toBe('r3');
    expect(c.model.path).toBe('/models/smol');
    expect(c.model.intraOpThreads).toBe(2);
  });
});

describe('LoRA fields', () => {
  it('accepts a rank with any non-empty set of projections, also for a new model', () => {
    const c = parseRunConfig({ model: { loraRank: 8, loraAlpha: 16, loraTargets: ['down_proj', 'q_proj'] } });
    expect(c.model).toMatchObject({ path: null, loraRank: 8, loraAlpha: 16, loraTargets: ['down_proj', 'q_proj'] });
    expect(parseRunConfig({ model: { loraRank: 4, path: '/models/smol' } }).model.loraTargets).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj']);
  });

  it('refuses bad loraTargets naming the field: unknown, empty, repeated, not a list', () => {
    expect(problems({ model: { loraTargets: ['q_proj', 'lm_head'] } })).toEqual([
      `model.loraTargets.1: must be one of 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj', got "lm_head"`,
    ]);
    expect(problems({ model: { loraTargets: [] } })).toEqual(['model.loraTargets: must have at least 1 entry, got []']);
    expect(problems({ model: { loraTargets: ['v_proj', 'q_proj', 'v_proj'] } })).toEqual(["model.loraTargets: lists 'v_proj' twice"]);
    expect(problems({ model: { loraTargets: 'q_proj' } })).toEqual(['model.loraTargets: must be a list, got "q_proj"']);
    expect(problems({ model: { loraRank: -1, loraAlpha: 0 } })).toEqual([expect.stringMatching(/^model\.loraRank: /), expect.stringMatching(/^model\.loraAlpha: /)]);
  });
});

describe('parseRunConfig errors', () => {
  it('names every bad field at once: unknown, wrong type, out of range', () => {
    const found = problems({
      epochs: 3,
      model: { intraOpThreads: 0, colour: 'red' },
      rollout: { groupSize: 2.5, topP: 0 },
      dro: { r3: { weighting: 'cubic' }, klBeta: -1 },
      optimizer: { learningRate: '1e-5' },
      filtering: { dropShare: 1 },
    });
    expect(found).toEqual(
      expect.arrayContaining([
        'epochs: unknown field',
        'model.colour: unknown field',
        'model.intraOpThreads: must be ≥ 1, got 0',
        'rollout.groupSize: must be a whole number, got 2.5',
        'rollout.topP: must be > 0, got 0',
        `dro.r3.weighting: must be one of 'uniform' | 'linear' | 'softmax' | 'topk', got "cubic"`,
        'dro.klBeta: must be ≥ 0, got -1',
        'optimizer.learningRate: must be a number, got "1e-5"',
        'filtering.dropShare: must be < 1, got 1',
      ]),
    );
    expect(found).toHaveLength(9);
  });

  it('caps the list of unknown fields, saying how many more (500k stray keys make a short error)', () => {
    const stray = Object.fromEntries(Array.from({ length: 500_000 }, (_, i) => [`k${i}`, 1]));
    const listed = problems(stray);
    expect(listed).toHaveLength(1);
    expect(listed[0]!.split('; ')).toHaveLength(21);
    expect(listed[0]).toMatch(/^k0: unknown field; k1: unknown field; .*; and 499980 more unknown fields$/);
    const many = problems(Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`s${i}`, { x: 1 }])));
    expect(many.at(-1)).toMatch(/unknown field/);
    const manyBad = problems({ rollout: { groupSize: 0, promptsPerStep: 0, temperature: -1, topP: 2 }, optimizer: { learningRate: -1, beta1: 2, beta2: 2, epsilon: -1, weightDecay: -1, maxGradNorm: -1, updatesPerStep: 0 }, schedule: { totalSteps: 0, warmupSteps: -1, minLrRatio: 2 }, checkpoint: { every: 0, keepLast: 0, keepEvery: -1 }, evaluation: { examples: 0, temperature: -1, maxNewTokens: 0, samples: 0 }, filtering: { every: 0 }, seed: -1, orchestration: { stepsPerExecution: 0 } });
    expect(manyBad).toHaveLength(21);
    expect(manyBad.at(-1)).toMatch(/^and \d+ more problems$/);
  });

  it('checks rules that span fields', () => {
    expect(problems({ schedule: { totalSteps: 5, warmupSteps: 10 } })).toEqual(['schedule.warmupSteps: is 10, more than schedule.totalSteps (5)']);
    expect(problems({ model: { tokenizer: 'model' } })).toEqual([
      "model.tokenizer: is 'model' but model.path is null: a new model has no tokenizer.json; use 'byte' or 'auto'",
    ]);
    expect(problems({ data: { task: 'pararev' }, dro: { reward: 'correctness' } })[0]).toMatch(/^dro\.reward: 'correctness' needs short verifiable answers/);
    expect(parseRunConfig({ model: { path: 'm', tokenizer: 'model' } }).model.tokenizer).toBe('model');
    expect(problems({ evaluation: { every: 5 } })).toEqual(['evaluation.every: is 5, not a multiple of checkpoint.every (10): an evaluation needs a checkpoint at its step']);
    expect(parseRunConfig({ evaluation: { every: 20 } }).evaluation.every).toBe(20);
    expect(problems({ evaluation: { samples: 4 } })).toEqual([expect.stringMatching(/^evaluation\.samples: is 4 but evaluation\.temperature is 0/)]);
    expect(parseRunConfig({ evaluation: { samples: 4, temperature: 0.8 } }).evaluation.samples).toBe(4);
    expect(problems({ update: { microBatchTokens: 700 } })).toEqual(['update.microBatchTokens: is 700, less than the longest sequence an update may train (data.maxPromptTokens + rollout.maxNewTokens = 768): a sequence is never split']);
    expect(parseRunConfig({ update: { microBatchTokens: 768 } }).update.microBatchTokens).toBe(768);
    expect(parseRunConfig({ update: { microBatchTokens: 700 }, rollout: { maxNewTokens: 188 } }).update.microBatchTokens).toBe(700);
  });

  it('takes a .gguf model path, and checks cross-field data rules', () => {
    expect(parseRunConfig({ model: { path: '/m/smol.GGUF' } }).model.path).toBe('/m/smol.GGUF');
    expect(problems({ data: { task: 'finqa' }, sft: { steps: 10 } })).toEqual([expect.stringMatching(/^sft\.demonstrations: is null but task finqa has no built-in demonstrations/)]);
    expect(parseRunConfig({ data: { task: 'finqa' }, sft: { steps: 10, demonstrations: 'demos.jsonl' } }).sft.steps).toBe(10);
    expect(problems({ data: { trainPath: 'train.json' } })).toEqual([expect.stringMatching(/^data\.trainPath: must be null for the synthetic task/)]);
    expect(problems({ data: { evalPath: 'eval.json' } })).toEqual([expect.stringMatching(/^data\.evalPath: must be null for the synthetic task/)]);
    expect(problems({ data: { task: 'jsonl' } })).toEqual(['data.trainPath: is null but data.task is jsonl: give the JSONL file of your training records']);
    expect(parseRunConfig({ data: { task: 'jsonl', trainPath: 'mine.jsonl' } }).data.jsonl).toEqual({ fields: { prompt: 'prompt', reference: 'reference', answer: 'answer', id: 'id' }, chat: 'auto', system: null, formatInstruction: null, answerCheck: 'exact', tolerance: 1e-4 });
    expect(problems({ data: { task: 'jsonl', trainPath: 't.jsonl', jsonl: { answerCheck: 'none' } }, dro: { reward: 'correctness' } })).toEqual([expect.stringMatching(/^dro\.reward: is 'correctness' but data\.jsonl\.answerCheck is 'none'/)]);
    expect(problems({ dro: { reward: 'rouge1' } })).toEqual([expect.stringMatching(/^dro\.reward: is 'rouge1', which is for open-ended tasks \(pararev, jsonl\), not synthetic/)]);
    expect(parseRunConfig({ data: { task: 'jsonl', trainPath: 't.jsonl' }, dro: { reward: 'rouge1' } }).dro.reward).toBe('rouge1');
  });

  it('rejects a config that is not an object, and says so', () => {
    expect(problems('train fast')).toEqual(['(config): must be an object (a section of fields), got "train fast"']);
    expect(problems([1])).toEqual(['(config): must be an object (a section of fields), got [1]']);
    expect(new RunConfigError(['a: b']).message).toBe('invalid run configuration:\n  - a: b');
  });
});

describe('error messages a person can act on', () => {
  it('say what the field must be and echo the value it got', () => {
    expect(
      problems({
        model: { path: 5, executionProvider: 'gpu' },
        data: { evalPath: '' },
        rollout: { groupSize: 1.5 },
        optimizer: { learningRate: -1 },
        update: { microBatchTokens: 'lots' },
        evaluation: { baseAndFinal: 'yes' },
        dro: null,
      }),
    ).toEqual([
      'model.path: must be a string or null, got 5',
      `model.executionProvider: must be one of 'cpu' | 'cuda', got "gpu"`,
      'data.evalPath: must not be empty (null for none), got ""',
      'rollout.groupSize: must be a whole number, got 1.5',
      'dro: must be an object (a section of fields), got null',
      'optimizer.learningRate: must be > 0, got -1',
      `update.microBatchTokens: must be 'auto' | integer ≥ 1, got "lots"`,
      'evaluation.baseAndFinal: must be true or false, got "yes"',
    ]);
    expect(problems({ data: { synthetic: { digits: 16 } } })).toEqual(['data.synthetic.digits: must be ≤ 15, got 16']);
    // A free-form field's entry says what it may be; a list that holds itself (a YAML alias can make one) is named, not printed.
    const loop: unknown[] = [];
    loop.push(loop);
    expect(problems({ model: { init: { hidden_size: 'wide' }, loraTargets: loop } })).toEqual([
      'model.init.hidden_size: must be a number or true or false, got "wide"',
      'model.loraTargets.0: must be one of \'q_proj\' | \'k_proj\' | \'v_proj\' | \'o_proj\' | \'gate_proj\' | \'up_proj\' | \'down_proj\', got a list that contains itself',
    ]);
    // A long value is cut short: an error names the value, it does not repeat a file.
    expect(problems({ model: { path: 'x'.repeat(500), tokenizer: 'x'.repeat(500) } })[0]).toBe(`model.tokenizer: must be one of 'auto' | 'byte' | 'model', got "${'x'.repeat(59)}…`);
  });

  it('suggest the field meant for a near miss in the same section, for a section, and for a field of another section', () => {
    expect(problems({ optimizer: { learningrate: 1e-3 }, rollout: { grupSize: 4, gorupSize: 4 }, optimzer: {}, model: { colour: 'red' } })).toEqual([
      'model.colour: unknown field',
      'rollout.grupSize: unknown field (did you mean `groupSize`?); rollout.gorupSize: unknown field (did you mean `groupSize`?)',
      'optimizer.learningrate: unknown field (did you mean `learningRate`?)',
      'optimzer: unknown field (did you mean `optimizer`?)',
    ]);
    expect(problems({ rollout: { learningRate: 1e-3 }, totalSteps: 5 })).toEqual([
      'rollout.learningRate: unknown field (did you mean `sft.learningRate` or `optimizer.learningRate`?)',
      'totalSteps: unknown field (did you mean `schedule.totalSteps`?)',
    ]);
    // Short keys get no far-fetched guess, and a long one is cut short with none.
    expect(problems({ lr: 1, dr: 1, ['seed'.repeat(30)]: 1 })).toEqual([`lr: unknown field; dr: unknown field (did you mean \`dro\`?); ${'seed'.repeat(20)}…: unknown field`]);
  });

  it('report problems between fields together with bad fields, leaving out a rule that read a bad value', () => {
    expect(problems({ rollout: { groupSize: 1.5 }, schedule: { totalSteps: 5, warmupSteps: 10 } })).toEqual([
      'rollout.groupSize: must be a whole number, got 1.5',
      'schedule.warmupSteps: is 10, more than schedule.totalSteps (5)',
    ]);
    expect(problems({ colour: 'red', model: { tokenizer: 'model', loraTargets: ['lm_head'] } })).toEqual([
      expect.stringMatching(/^model\.loraTargets\.0: must be one of /),
      'colour: unknown field',
      "model.tokenizer: is 'model' but model.path is null: a new model has no tokenizer.json; use 'byte' or 'auto'",
    ]);
    // temperature -1 is bad, so the default 0 stands in for it: "samples is 4 but temperature is 0" would blame the stand-in.
    expect(problems({ evaluation: { samples: 4, temperature: -1 } })).toEqual(['evaluation.temperature: must be ≥ 0, got -1']);
    // A bad section stands in whole: its fields are not judged against the rules either.
    expect(problems({ schedule: 'short', evaluation: { every: 5 } })).toEqual([
      'schedule: must be an object (a section of fields), got "short"',
      'evaluation.every: is 5, not a multiple of checkpoint.every (10): an evaluation needs a checkpoint at its step',
    ]);
    expect(problems({ schedule: { totalSteps: 0, warmupSteps: 10 } })).toEqual(['schedule.totalSteps: must be ≥ 1, got 0']);
    // Two bad entries of one list: the list stands in once, and the rules still run.
    expect(problems({ model: { loraTargets: ['a', 'b'], tokenizer: 'model' } })).toEqual([
      expect.stringMatching(/^model\.loraTargets\.0: .*got "a"$/),
      expect.stringMatching(/^model\.loraTargets\.1: .*got "b"$/),
      expect.stringMatching(/^model\.tokenizer: is 'model' but model\.path is null/),
    ]);
  });

  it('leaves the exported schema with the same rules between fields', () => {
    const result = RunConfigSchema.safeParse({ schedule: { totalSteps: 5, warmupSteps: 10 } });
    expect(result.error?.issues.map((i) => [i.path.join('.'), i.message])).toEqual([['schedule.warmupSteps', 'is 10, more than schedule.totalSteps (5)']]);
  });

  it('checks a config in well under a second', () => {
    const start = performance.now();
    for (let i = 0; i < 20; i++) problems({ rollout: { groupSize: 1.5 }, optimizer: { learningrate: 1 }, schedule: { totalSteps: 5, warmupSteps: 10 } });
    expect((performance.now() - start) / 20).toBeLessThan(100);
  });
});

describe('unknownFieldPath (for --set)', () => {
  it('accepts fields, sections and the free-form keys of model.init', () => {
    for (const path of ['seed', 'optimizer.learningRate', 'dro.r3', 'dro.r3.weighting', 'model.init.hidden_size']) expect(unknownFieldPath(path), path).toBeUndefined();
  });

  it('names the nearest field path, or says a field is no section', () => {
    expect(unknownFieldPath('optimizer.learningrate')).toBe('unknown field optimizer.learningrate (did you mean `optimizer.learningRate`?)');
    expect(unknownFieldPath('optimiser.learningRate')).toBe('unknown field optimiser.learningRate (did you mean `optimizer.learningRate`?)');
    expect(unknownFieldPath('rollout.totalSteps')).toBe('unknown field rollout.totalSteps (did you mean `schedule.totalSteps`?)');
    expect(unknownFieldPath('epochs')).toBe('unknown field epochs');
    expect(unknownFieldPath('seed.value')).toBe('seed is a single field, not a section: seed.value names nothing');
  });
});

describe('config documentation', () => {
  it('every field has a description and a default', () => {
    const docs = runConfigFieldDocs();
    expect(docs.length).toBeGreaterThan(50);
    for (const field of docs) {
      expect(field.description, field.path).not.toBe('');
      expect(field.default, field.path).not.toBe(undefined);
      expect(field.allowed, field.path).not.toBe('');
    }
    expect(docs.find((f) => f.path === 'dro.r3.weighting')).toEqual({
      path: 'dro.r3.weighting',
      default: '"linear"',
      allowed: "'uniform' | 'linear' | 'softmax' | 'topk'",
      description: 'w_Δ: how σ_j becomes a token weight (ours: linear)',
    });
    expect(docs.find((f) => f.path === 'rollout.topP')?.allowed).toBe('number > 0 ≤ 1');
    expect(docs.find((f) => f.path === 'optimizer.beta1')?.allowed).toBe('number ≥ 0 < 1');
  });

  it('renders a Markdown table with one row per field', () => {
    const table = runConfigMarkdownTable().split('\n');
    expect(table[0]).toBe('| field | default | allowed | meaning |');
    expect(table).toHaveLength(runConfigFieldDocs().length + 2);
    expect(table).toContain("| `dro.aggregation` | `\"dr-grpo\"` | 'dr-grpo' \\| 'sequence-mean' \\| 'token-mean' | Token aggregation of the loss |");
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every depth, keeps array order, drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null }, e: undefined })).toBe('{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}');
    expect(canonicalJson(parseRunConfig({ seed: 1 }))).toBe(canonicalJson(JSON.parse(JSON.stringify(parseRunConfig({ seed: 1 })))));
    expect(canonicalJson('x')).toBe('"x"');
  });
});

describe('configDifferences', () => {
  it('names every differing leaf by its dotted path, a field one side lacks included, in sorted order', () => {
    expect(configDifferences(parseRunConfig({}), parseRunConfig({}))).toEqual([]);
    expect(configDifferences(parseRunConfig({ seed: 1, rollout: { groupSize: 2 } }), parseRunConfig({ rollout: { groupSize: 3 } }))).toEqual(['rollout.groupSize', 'seed']);
    expect(configDifferences({ a: { b: [1, 2] }, c: 1 }, { a: { b: [2, 1] }, d: 1 })).toEqual(['a.b', 'c', 'd']);
    expect(configDifferences({ a: { x: 1, y: 2 } }, { a: { y: 2, x: 1 } })).toEqual([]);
    expect(configDifferences(1, 2)).toEqual(['(config)']);
  });
});
