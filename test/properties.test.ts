// Every outside-input parser against arbitrary input (test/properties.ts): a result or its typed
// error, never anything else. `npm run fuzz -- --runs <n>` runs the same properties longer.
import { expect, it } from 'vitest';
import { checkProperties } from './properties.js';

it('every parser of outside input gives a result or its typed error on arbitrary input', async () => {
  const results = await checkProperties(300);
  for (const r of results) {
    // Each property saw both kinds of input, so neither side is vacuous.
    expect(r.accepted, r.name).toBeGreaterThan(0);
    expect(r.refused, r.name).toBeGreaterThan(0);
  }
}, 120_000);
