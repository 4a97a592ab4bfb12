// The one factory of every activity (docs/architecture.md, "Layout"): control activities need only a store; policy
// activities need this worker's PolicyHost. Workflows import the result's type, never the code.
import { createEvaluationActivities } from './evaluation.js';
import { createFilteringActivities } from './filtering.js';
import { storeCache, type StoreOpener } from './context.js';
import { NO_FAULTS, type FaultPlan } from './faults.js';
import type { PolicyHost } from './policy-host.js';
import { createPolicyStateActivities, defaultIdentity } from './policy-state.js';
import { createTrainingStepActivities } from './training-step.js';
import { createUnitActivities } from './units.js';

export interface ActivityDeps {
  /** Present on policy workers: the engines this worker owns. */
  host?: PolicyHost;
  openStore?: StoreOpener;
  faults?: FaultPlan;
  identity?: string;
}

export function createActivities(deps: ActivityDeps = {}) {
  const openStore = deps.openStore ?? storeCache();
  const faults = deps.faults ?? NO_FAULTS;
  const identity = deps.identity ?? defaultIdentity();
  return {
    ...createPolicyStateActivities({ host: deps.host, openStore, faults, identity }),
    ...createTrainingStepActivities({ host: deps.host, openStore, faults }),
    ...createUnitActivities({ host: deps.host, openStore, faults, identity }),
    ...createFilteringActivities({ host: deps.host, openStore }),
    ...createEvaluationActivities({ host: deps.host, openStore, identity }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
