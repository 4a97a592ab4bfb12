// Helper for the dataset tests: a block that reads shared dataset files runs when they are there, is skipped
// with a note when they are not, and fails when DRO_REQUIRE_DATASETS=1 (CI), so a missing dataset cannot pass.
import { describe, it } from 'vitest';

/** `describe(name, body)` over the shared files `files` (from `sharedDatasetFile`), as above. */
export function describeWithDataset(name: string, files: { path: string; present: boolean }[], body: () => void): void {
  const missing = files.filter((f) => !f.present).map((f) => f.path);
  if (missing.length === 0) {
    describe(name, body);
  } else if (process.env.DRO_REQUIRE_DATASETS === '1') {
    describe(name, () => {
      it('finds its shared dataset files (DRO_REQUIRE_DATASETS=1)', () => {
        throw new Error(`shared dataset files missing: ${missing.join(', ')} (set DRO_DATASETS_DIR to the folder that holds them)`);
      });
    });
  } else {
    console.warn(`${name}: skipped, shared dataset files not found: ${missing.join(', ')}`);
    describe.skip(name, body);
  }
}
