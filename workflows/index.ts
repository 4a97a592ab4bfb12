// Every workflow the control worker runs, for its bundle (one workflow per file).
export { trainingRun } from './training-run.js';
export { evaluateCheckpoint } from './evaluate-checkpoint.js';
