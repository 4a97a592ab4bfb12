// Import rules between the project's folders (docs/architecture.md, "Dependencies between folders"), checked by `npm run depcheck`.
// Layers from the bottom: dro/ and storage/; datasets/ and engine/; activities/; workflows/; workers/; cli/ (the
// product's command line); scripts/ (dev tools) at the top. A lower layer never imports a higher one; tests may import what they test
// and the helpers in test/. Type-only imports count (a type edge still ties the files together), except where a
// rule says that types may cross.

/** Test files and test support (`testing/` folders beside the code): exempt from the layer rules (a test reaches into what it tests and into test/). */
const TESTS = '(^test/|\\.test\\.ts$|/testing/)';

/** `from` of a layer rule: the folder's own source files, without its tests. */
const sourceOf = (folder) => ({ path: `^${folder}/`, pathNot: TESTS });

/** Every folder of ours a source file may import (node_modules and Node's built-ins are not ours). */
const OURS = '^(activities|bin|cli|datasets|dro|engine|scripts|storage|test|workers|workflows)/';

/** Rule: files of `folder` import, of ours, only the folders in `allowed` (a regex alternation). */
function onlyImports(name, folder, allowed, comment) {
  return {
    name,
    comment,
    severity: 'error',
    from: sourceOf(folder),
    to: { path: OURS, pathNot: `^(${allowed})/` },
  };
}

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'Source files import each other in one direction only: a circle makes the files in it one unit that cannot be read, tested or moved alone.',
      severity: 'error',
      from: { pathNot: TESTS },
      to: { circular: true, viaOnly: { pathNot: TESTS } },
    },
    onlyImports('dro-imports-nothing-of-ours', 'dro', 'dro', 'dro/ is the pure algorithm: arrays in, arrays out; it imports nothing of ours.'),
    onlyImports('storage-imports-only-storage', 'storage', 'storage', 'storage/ (blob stores, checkpoints) stands on nothing of ours.'),
    onlyImports('datasets-below-engine-and-activities', 'datasets', 'datasets|dro|storage', 'datasets/ reads tasks and data with dro/ and storage/ only.'),
    onlyImports('engine-below-activities', 'engine', 'engine|dro|storage', 'engine/ (the policy engine) uses dro/ and storage/ only; the activities drive it, never the reverse.'),
    onlyImports('activities-below-workflows', 'activities', 'activities|datasets|dro|engine|storage', 'activities/ never imports workflows/, workers/, scripts/ or test/.'),
    {
      name: 'workflows-import-only-dro-as-code',
      comment: 'Workflow code runs in the deterministic sandbox: of ours only dro/ (pure) and activities/errors.ts as code, everything else as types (proxyActivities).',
      severity: 'error',
      from: sourceOf('workflows'),
      to: { path: OURS, pathNot: '^(workflows|dro)/|^activities/errors\\.ts$', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'workflows-no-node-builtins',
      comment: 'Node built-ins are not available in the workflow sandbox (lint says the same).',
      severity: 'error',
      from: sourceOf('workflows'),
      to: { dependencyTypes: ['core'] },
    },
    onlyImports('workflows-types-from-below-only', 'workflows', 'workflows|activities|dro|datasets|engine|storage', 'workflows/ names no type of workers/, scripts/ or test/.'),
    onlyImports('workers-below-scripts', 'workers', 'workers|workflows|activities|datasets|dro|engine|storage', 'workers/ runs in production images: it never imports the dev tools in scripts/, the CLI or test/.'),
    {
      name: 'engine-front-door',
      comment: 'Outside engine/, source files reach the engine only through engine/index.ts, its one list of what it offers.',
      severity: 'error',
      from: { pathNot: `^engine/|${TESTS}` },
      to: { path: '^engine/', pathNot: '^engine/index\\.ts$' },
    },
    {
      name: 'only-the-top-imports-the-cli',
      comment: 'cli/ (the dro command line and Temporal client) sits on top: only scripts/, bin/ and tests import it.',
      severity: 'error',
      from: { pathNot: `^(scripts|cli|bin)/|${TESTS}` },
      to: { path: '^cli/' },
    },
    {
      name: 'nothing-imports-the-dev-tools',
      comment: 'scripts/ holds dev tools (benchmarks, demos, services, the experiment): only scripts/ and tests import it, so the product (cli/, workers/) ships without it.',
      severity: 'error',
      from: { pathNot: `^scripts/|${TESTS}` },
      to: { path: '^scripts/' },
    },
    {
      name: 'no-test-code-in-the-product',
      comment: 'Only tests and dev scripts import test/ (helpers, fixtures, the slow reference).',
      severity: 'error',
      from: { pathNot: `^(scripts|test)/|\\.test\\.ts$|/testing/` },
      to: { path: '^test/' },
    },
    {
      name: 'one-door-to-onnxruntime',
      comment: 'Exactly one module imports onnxruntime-node (engine/ort.ts): the runtime can be pinned, mocked or replaced in one place.',
      severity: 'error',
      from: { pathNot: '^engine/ort\\.ts$' },
      to: { path: '(^|/)node_modules/onnxruntime-node/' },
    },
    {
      name: 'one-door-to-aws-sdk',
      comment: 'Exactly one module imports @aws-sdk/* (storage/s3-store.ts).',
      severity: 'error',
      from: { pathNot: '^storage/s3-store\\.ts$' },
      to: { path: '(^|/)node_modules/@aws-sdk/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(\\.tools|\\.data)/' },
    tsConfig: { fileName: 'tsconfig.json' },
    // Type-only imports are edges too (see the header).
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs', '.cjs', '.json'] },
  },
};
