// The reproduction experiment as a plan: its committed config (seeds, the run settings every arm shares,
// the --quick overrides) expanded into one training run per (arm, seed), each with a run id derived from
// its full config, so a driver started again finds the runs it already finished and starts only the rest.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson, parseRunConfig, RunConfigError, type RunConfig } from '../../dro/config.js';
import { UsageError } from '../../cli/options.js';

/**
 * The arms the paper compares (v1, Table 2 and the filtering ablation), each a change to the shared run
 * settings. The base arm is not trained: it is the SFT warm start every arm begins from (the same weights,
 * since the warm start depends on the seed and the SFT settings only), read from the r3 arm's step 0.
 */
export const ARMS = {
  aggregate: { dro: { reward: 'aggregate' }, filtering: { enabled: false } },
  r3: { dro: { reward: 'r3' }, filtering: { enabled: false } },
  correctness: { dro: { reward: 'correctness' }, filtering: { enabled: false } },
  'r3-filtered': { dro: { reward: 'r3' }, filtering: { enabled: true } },
} as const;
export type Arm = keyof typeof ARMS;
export const ARM_NAMES = Object.keys(ARMS) as Arm[];

const Settings = z.object({ seeds: z.array(z.number().int().min(0)).min(1), run: z.record(z.string(), z.unknown()) }).strict();
const ExperimentSchema = z
  .object({
    description: z.string().optional(),
    seeds: Settings.shape.seeds,
    run: Settings.shape.run,
    quick: Settings.partial().strict(),
  })
  .strict();
export type ExperimentConfig = z.infer<typeof ExperimentSchema>;

export interface PlannedRun {
  arm: Arm;
  seed: number;
  runId: string;
  config: RunConfig;
}

export interface Plan {
  /** Names this experiment (mode, tag and every run) where its driver records are kept. */
  id: string;
  mode: 'full' | 'quick';
  seeds: number[];
  /** The shared run settings of this mode, as given (before the arms' changes). */
  run: Record<string, unknown>;
  runs: PlannedRun[];
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `over` laid onto `base`, objects merged key by key, anything else replaced. */
export function overlay(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = isObject(v) && isObject(out[k]) ? overlay(out[k], v) : v;
  return out;
}

export function parseExperimentConfig(json: unknown, source: string): ExperimentConfig {
  const parsed = ExperimentSchema.safeParse(json);
  if (!parsed.success) throw new Error(`${source}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(config)'}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/**
 * One run per (arm, seed). Relative paths in the run settings are the caller's to resolve; `store`
 * replaces checkpoint.store when given; `tag` goes into every run id, to run the same settings afresh. Every run config is validated here, naming the arm and seed.
 */
export function planExperiment(experiment: ExperimentConfig, mode: 'full' | 'quick', options: { store?: string; tag?: string } = {}): Plan {
  const { store, tag } = options;
  if (tag !== undefined && !/^[a-z0-9][a-z0-9-]{0,31}$/i.test(tag)) throw new UsageError(`--tag must be 1 to 32 letters, digits or dashes, got ${JSON.stringify(tag)}`);
  const seeds = mode === 'quick' ? (experiment.quick.seeds ?? experiment.seeds) : experiment.seeds;
  const run = mode === 'quick' ? overlay(experiment.run, experiment.quick.run ?? {}) : experiment.run;
  const stem = `repro-${mode}${tag ? `-${tag}` : ''}`;
  const runs = ARM_NAMES.flatMap((arm) =>
    seeds.map((seed) => {
      let config: RunConfig;
      try {
        config = parseRunConfig(overlay(overlay(run, ARMS[arm]), { seed, ...(store ? { checkpoint: { store } } : {}) }));
      } catch (err) {
        if (err instanceof RunConfigError) throw new Error(`arm ${arm}, seed ${seed}: ${err.message}`, { cause: err });
        throw err;
      }
      // The store is where the run lives, not what it computes: the same run found in a copied store keeps its id.
      const digest = createHash('sha256').update(canonicalJson({ ...config, checkpoint: { ...config.checkpoint, store: null } })).digest('hex').slice(0, 8);
      return { arm, seed, runId: `${stem}-${arm}-s${seed}-${digest}`, config };
    }),
  );
  const id = `${stem}-${createHash('sha256').update(runs.map((r) => r.runId).join('\n')).digest('hex').slice(0, 8)}`;
  return { id, mode, seeds, run, runs };
}
