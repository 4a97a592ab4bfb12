// Checks of the live hyper-parameter changes: the validator agrees with the run-config schema on every
// boundary, names the field it rejects, and configAt applies changes from their step in order.
import { describe, expect, it } from 'vitest';
import { parseRunConfig, RunConfigError } from './config.js';
import { configAt, HYPERPARAMETERS, hyperparametersOf, validateHyperparameterRequest, type HyperparameterName } from './hyperparameters.js';

const config = parseRunConfig({ schedule: { totalSteps: 40 }, checkpoint: { every: 5 } });

/** The schema's verdict on `value` in the field that `name` overrides. */
function schemaAccepts(name: HyperparameterName, value: number): boolean {
  const [section, field] = HYPERPARAMETERS[name].field.split('.') as [string, string];
  try {
    parseRunConfig({ checkpoint: { every: 5 }, [section]: { [field]: value } });
    return true;
  } catch (err) {
    if (err instanceof RunConfigError) return false;
    throw err;
  }
}

function validatorAccepts(name: HyperparameterName, value: number): boolean {
  try {
    validateHyperparameterRequest({ [name]: value }, config, 1);
    return true;
  } catch {
    return false;
  }
}

describe('validateHyperparameterRequest', () => {
  it('agrees with the run-config schema on every boundary', () => {
    const probes = [-1, -1e-12, 0, 1e-12, 0.5, 1, 2.5, 5, 7, 10, 1e6];
    for (const name of Object.keys(HYPERPARAMETERS) as HyperparameterName[]) {
      for (const v of probes) expect(validatorAccepts(name, v), `${name} = ${v}`).toBe(schemaAccepts(name, v));
    }
  });

  it('fills in the next step and keeps only the given fields', () => {
    expect(validateHyperparameterRequest({ learningRate: 2e-5, temperature: 0.7 }, config, 8)).toEqual({ fromStep: 8, learningRate: 2e-5, temperature: 0.7 });
    expect(validateHyperparameterRequest({ klBeta: 0, fromStep: 12 }, config, 8)).toEqual({ fromStep: 12, klBeta: 0 });
  });

  it('names the field it rejects', () => {
    const reject = (request: unknown, next = 3) => () => validateHyperparameterRequest(request, config, next);
    expect(reject({ learningRate: -1 })).toThrow(/^learningRate \(optimizer\.learningRate\) must be a number > 0, got -1$/);
    expect(reject({ temperature: 'hot' })).toThrow(/^temperature \(rollout\.temperature\) must be/);
    expect(reject({ klBeta: Number.NaN })).toThrow(/^klBeta/);
    expect(reject({ evaluationEvery: 7 })).toThrow(/^evaluationEvery \(evaluation\.every\) must be a multiple of checkpoint\.every \(5\)/);
    expect(reject({ evaluationEvery: 2.5 })).toThrow(/^evaluationEvery .* must be an integer ≥ 0/);
    expect(reject({ lr: 1, beta: 2 })).toThrow(/^lr, beta: unknown fields \(changeable: learningRate, klBeta, temperature, evaluationEvery\)$/);
    expect(reject({ fromStep: 5 })).toThrow(/^nothing to change/);
    expect(reject({ learningRate: 1, fromStep: 2 })).toThrow(/^fromStep must be an integer ≥ 3/);
    expect(reject({ learningRate: 1, fromStep: 41 })).toThrow(/^fromStep 41 is past the run's last step \(40\)/);
    expect(reject(null)).toThrow(/is an object/);
    expect(reject([1])).toThrow(/is an object/);
  });
});

describe('configAt', () => {
  const changes = [
    { fromStep: 5, learningRate: 1e-4, temperature: 0.5 },
    { fromStep: 9, learningRate: 3e-5, klBeta: 0.2, evaluationEvery: 10 },
  ];

  it('applies each change from its step, later ones over earlier ones', () => {
    expect(configAt(config, changes, 4)).toBe(config);
    expect(hyperparametersOf(configAt(config, changes, 5))).toEqual({ ...hyperparametersOf(config), learningRate: 1e-4, temperature: 0.5 });
    expect(hyperparametersOf(configAt(config, changes, 9))).toEqual({ learningRate: 3e-5, klBeta: 0.2, temperature: 0.5, evaluationEvery: 10 });
    expect(configAt(config, undefined, 100)).toBe(config);
  });

  it('leaves the run config and every other field alone', () => {
    const before = JSON.stringify(config);
    const at = configAt(config, changes, 20);
    expect(JSON.stringify(config)).toBe(before);
    expect({ ...at, optimizer: config.optimizer, dro: config.dro, rollout: config.rollout, evaluation: config.evaluation }).toEqual(config);
    expect(at.optimizer.beta1).toBe(config.optimizer.beta1);
  });
});
