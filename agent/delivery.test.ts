import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frameRanges } from './delivery.js';

test('frameRanges: runs of consecutive frame numbers, duplicates once, any order', () => {
  assert.equal(frameRanges([]), '');
  assert.equal(frameRanges([7n]), '7');
  assert.equal(frameRanges([3n, 1n, 2n, 7n, 9n, 8n, 2n]), '1-3,7-9');
  assert.equal(frameRanges([30002n, 30004n]), '30002,30004');
  assert.equal(frameRanges([2n ** 63n - 1n, 2n ** 63n - 2n]), '9223372036854775806-9223372036854775807');
});
