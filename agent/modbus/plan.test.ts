import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planRequests, PlanError, type PlanPoint } from './plan.js';

const hr = (address: number, width = 1, unitId = 1): PlanPoint => ({ unitId, table: 'holding', address, width });
const summary = (points: PlanPoint[], options = {}) => planRequests(points, options).map((r) => `${r.unitId}:${r.table}:${r.start}+${r.count}:[${r.points.join(',')}]`);

test('contiguous points merge into one request', () => {
  assert.deepEqual(summary([hr(0, 2), hr(2, 2), hr(4, 1)]), ['1:holding:0+5:[0,1,2]']);
});

test('a hole splits requests at maxGap 0 and merges within maxGap', () => {
  const points = [hr(0, 2), hr(5, 1), hr(20, 4)];
  assert.deepEqual(summary(points), ['1:holding:0+2:[0]', '1:holding:5+1:[1]', '1:holding:20+4:[2]']);
  assert.deepEqual(summary(points, { maxGap: 3 }), ['1:holding:0+6:[0,1]', '1:holding:20+4:[2]']);
  assert.deepEqual(summary(points, { maxGap: 2 }), ['1:holding:0+2:[0]', '1:holding:5+1:[1]', '1:holding:20+4:[2]']);
  assert.deepEqual(summary(points, { maxGap: 14 }), ['1:holding:0+24:[0,1,2]']);
});

test('input order does not matter; point indexes refer to the input', () => {
  assert.deepEqual(summary([hr(10), hr(8, 2), hr(0, 4)]), ['1:holding:0+4:[2]', '1:holding:8+3:[1,0]']);
});

test('overlapping and duplicate points share a request', () => {
  assert.deepEqual(summary([hr(0, 4), hr(2, 1), hr(2, 2), hr(0, 4)]), ['1:holding:0+4:[0,3,2,1]']);
});

test('never merges across unit ids or tables', () => {
  const points: PlanPoint[] = [hr(0, 1, 2), hr(1, 1, 1), { unitId: 1, table: 'input', address: 2, width: 1 }, hr(0, 1, 1), { unitId: 1, table: 'coil', address: 0, width: 1 }, { unitId: 1, table: 'discrete', address: 1, width: 1 }];
  assert.deepEqual(summary(points, { maxGap: 100 }), ['1:coil:0+1:[4]', '1:discrete:1+1:[5]', '1:holding:0+2:[3,1]', '1:input:2+1:[2]', '2:holding:0+1:[0]']);
});

test('respects 125 registers per request', () => {
  const points = Array.from({ length: 130 }, (_, i) => hr(i));
  const plan = planRequests(points);
  assert.deepEqual(plan.map((r) => [r.start, r.count]), [[0, 125], [125, 5]]);
  // A 4-register value that would cross the limit starts a new request instead of being split.
  const plan2 = planRequests([hr(0, 121), hr(121, 4), hr(125, 4)]);
  assert.deepEqual(plan2.map((r) => [r.start, r.count]), [[0, 125], [125, 4]]);
  const plan3 = planRequests([hr(0, 122), hr(122, 4)]);
  assert.deepEqual(plan3.map((r) => [r.start, r.count]), [[0, 122], [122, 4]]);
});

test('respects 2000 bits per request and custom limits', () => {
  const coils = Array.from({ length: 2001 }, (_, i): PlanPoint => ({ unitId: 1, table: 'coil', address: i, width: 1 }));
  assert.deepEqual(planRequests(coils).map((r) => [r.start, r.count]), [[0, 2000], [2000, 1]]);
  assert.deepEqual(planRequests([hr(0), hr(1), hr(2)], { maxRegisters: 2 }).map((r) => [r.start, r.count]), [[0, 2], [2, 1]]);
});

test('maxGap counts bits on bit tables', () => {
  const coil = (address: number): PlanPoint => ({ unitId: 1, table: 'coil', address, width: 1 });
  assert.deepEqual(summary([coil(0), coil(9)], { maxGap: 8 }), ['1:coil:0+10:[0,1]']);
  assert.deepEqual(summary([coil(0), coil(10)], { maxGap: 8 }), ['1:coil:0+1:[0]', '1:coil:10+1:[1]']);
});

test('the top of the address space is reachable, beyond it is an error', () => {
  assert.deepEqual(summary([hr(65532, 4)]), ['1:holding:65532+4:[0]']);
  assert.throws(() => planRequests([hr(65533, 4)]), PlanError);
  assert.throws(() => planRequests([hr(-1)]), /outside 0..65535/);
  assert.throws(() => planRequests([hr(0, 126)]), /spans 126 registers; one request reads 1..125/);
  assert.throws(() => planRequests([hr(0, 0)]), PlanError);
});

test('empty input plans nothing', () => {
  assert.deepEqual(planRequests([]), []);
});
