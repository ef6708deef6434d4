// The gateway's bounded label sets: a value is named only once admitted, and
// no more than the limit are ever admitted.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BoundedLabels, OTHER_LABEL } from '#gateway/gateway/metrics.js';

describe('BoundedLabels', () => {
  it('names admitted values, counts the rest as (other), and admits at most max', () => {
    const labels = new BoundedLabels(3);
    assert.equal(labels.label('/a/Never', false), OTHER_LABEL, 'not admitted: not named');
    assert.equal(labels.label('/a/One', true), '/a/One');
    assert.equal(labels.label('/a/One', false), '/a/One', 'once admitted, always named');
    assert.equal(labels.label('/a/Two', true), '/a/Two');
    assert.equal(labels.label('/a/Three', true), '/a/Three');
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) seen.add(labels.label(`/made/Up${i}`, true));
    assert.deepEqual([...seen], [OTHER_LABEL], 'beyond the limit everything is (other)');
    assert.equal(labels.label('/a/Two', true), '/a/Two');
  });
});
