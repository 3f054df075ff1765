/** Pure parts of the MQTT tap: JSON paths, topic filters, payload decoding. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateJsonPath, parseJsonPath, type JsonPath } from './json-path.js';
import { topicFilterError, topicMatches } from './topic.js';
import { decodePayload, type DecodeSpec } from './decode.js';

function path(text: string): JsonPath {
  const parsed = parseJsonPath(text);
  if (typeof parsed === 'string') throw new Error(parsed);
  return parsed;
}

test('json path: supported syntax evaluates', () => {
  const doc = { a: { b: [{ c: 1 }, { c: 2, 'odd key': 'x' }] }, 'with-dash': true, n: null };
  const cases: [string, unknown][] = [
    ['$', doc],
    ['$.a.b[1].c', 2],
    ['$.a.b[0].c', 1],
    ["$.a.b[1]['odd key']", 'x'],
    ['$.a.b[1]["odd key"]', 'x'],
    ['$.with-dash', true],
    ['$.n', null],
  ];
  for (const [text, expected] of cases) {
    const result = evaluateJsonPath(path(text), doc);
    assert.deepEqual(result, { found: true, value: expected }, text);
  }
});

test('json path: missing segments are named', () => {
  const doc = { a: { b: [1] }, s: 'text' };
  assert.deepEqual(evaluateJsonPath(path('$.a.x.y'), doc), { found: false, missing: '$.a.x' });
  assert.deepEqual(evaluateJsonPath(path('$.a.b[3]'), doc), { found: false, missing: '$.a.b[3]' });
  assert.deepEqual(evaluateJsonPath(path('$.a[0]'), doc), { found: false, missing: '$.a[0]' });
  assert.deepEqual(evaluateJsonPath(path('$.s.length'), doc), { found: false, missing: '$.s.length' });
  assert.deepEqual(evaluateJsonPath(path("$['odd key']"), doc), { found: false, missing: "$['odd key']" });
});

test('json path: never walks the prototype chain', () => {
  const doc = JSON.parse('{"a": {}}');
  assert.equal(evaluateJsonPath(path('$.a.constructor'), doc).found, false);
  assert.equal(evaluateJsonPath(path('$.__proto__'), {}).found, false);
  assert.equal(evaluateJsonPath(path('$.a.toString'), doc).found, false);
  // An own "__proto__" key from JSON.parse is a plain member and may be read.
  assert.deepEqual(evaluateJsonPath(path('$.__proto__.x'), JSON.parse('{"__proto__": {"x": 5}}')), { found: true, value: 5 });
});

test('json path: unsupported or broken syntax is refused with the position', () => {
  const cases: [string, string][] = [
    ['a.b', 'JSON path must start with "$" (e.g. "$.temperature" or "$.sensors[0].value")'],
    ['$..a', 'unsupported JSON path syntax at position 1: recursive descent ".." (supported: $.key, [index], [\'key\'])'],
    ['$.a.*', 'unsupported JSON path syntax at position 3: wildcard "*" (supported: $.key, [index], [\'key\'])'],
    ['$.a[*]', 'unsupported JSON path syntax at position 3: wildcard "*" (supported: $.key, [index], [\'key\'])'],
    ['$.a[?(@.x>1)]', 'unsupported JSON path syntax at position 3: filter expression "[?(...)]" (supported: $.key, [index], [\'key\'])'],
    ['$.a[-1]', 'unsupported JSON path syntax at position 3: negative index (supported: $.key, [index], [\'key\'])'],
    ['$.a[0:2]', 'unsupported JSON path syntax at position 3: slice "[a:b]" (supported: $.key, [index], [\'key\'])'],
    ['$.a[0,1]', 'unsupported JSON path syntax at position 3: union "[a,b]" (supported: $.key, [index], [\'key\'])'],
    ['$.1a', 'expected a key name after "." at position 2; use [\'key\'] for keys with other characters'],
    ['$.', 'expected a key name after "." at position 2; use [\'key\'] for keys with other characters'],
    ['$.a[01]', 'expected a non-negative array index at position 4'],
    ['$.a[x]', 'expected a non-negative array index at position 4'],
    ["$['a", 'unterminated quoted key at position 1'],
    ["$['a\\'b']", 'escapes in quoted keys are not supported at position 1'],
    ['$a', 'unexpected "a" at position 1; expected "." or "["'],
    ['$' + '.a'.repeat(200), 'JSON path longer than 256 characters'],
    ['$' + '.a'.repeat(33), 'JSON path deeper than 32 segments'],
  ];
  for (const [text, message] of cases) assert.equal(parseJsonPath(text), message, text);
});

test('topic filters: validation', () => {
  for (const ok of ['a', 'a/b', '+', '#', 'a/+/c', 'a/#', '+/+/#', '/a', 'a//b', '$SYS/#']) assert.equal(topicFilterError(ok), undefined, ok);
  const bad: [string, string][] = [
    ['', 'topic filter must not be empty'],
    ['a/#/b', '"#" must be a whole level and the last one (e.g. "plant/#"), found level "#"'],
    ['a#', '"#" must be a whole level and the last one (e.g. "plant/#"), found level "a#"'],
    ['a/b+', '"+" must be a whole level (e.g. "plant/+/temp"), found level "b+"'],
    ['a/\u0000', 'topic filter must not contain NUL'],
    ['$share/group/a', 'shared subscriptions ($share/...) are not supported: a tap must see every message'],
    ['x'.repeat(65536), 'topic filter longer than 65535 bytes'],
  ];
  for (const [filter, message] of bad) assert.equal(topicFilterError(filter), message, filter.slice(0, 20));
});

test('topic filters: matching', () => {
  const cases: [string, string, boolean][] = [
    ['a/b', 'a/b', true],
    ['a/b', 'a/c', false],
    ['a/+', 'a/b', true],
    ['a/+', 'a/b/c', false],
    ['a/+', 'a', false],
    ['a/+/c', 'a/x/c', true],
    ['a/#', 'a', true],
    ['a/#', 'a/b/c', true],
    ['a/#', 'b/a', false],
    ['#', 'anything/at/all', true],
    ['#', '$SYS/broker/uptime', false],
    ['+/broker', '$SYS/broker', false],
    ['$SYS/#', '$SYS/broker/uptime', true],
    ['+', '', true],
    ['a//b', 'a//b', true],
    ['+/+', '/a', true],
  ];
  for (const [filter, topic, expected] of cases) assert.equal(topicMatches(filter, topic), expected, `${filter} vs ${topic}`);
});

const bytes = (text: string) => new TextEncoder().encode(text);

test('decode: raw payloads', () => {
  assert.deepEqual(decodePayload({}, 't', bytes(' 21.5\n')), { ok: true, value: 21.5 });
  assert.deepEqual(decodePayload({ scale: 0.1, offset: -1 }, 't', bytes('200')), { ok: true, value: 19 });
  assert.deepEqual(decodePayload({ type: 'string' }, 't', bytes('running')), { ok: true, value: 'running' });
  assert.deepEqual(decodePayload({ type: 'boolean' }, 't', bytes('ON')), { ok: true, value: true });
  assert.deepEqual(decodePayload({ type: 'boolean' }, 't', bytes('0')), { ok: true, value: false });
  assert.deepEqual(decodePayload({}, 'p/x', bytes('running')), { ok: false, reason: 'payload on topic p/x is not a number' });
  assert.deepEqual(decodePayload({}, 'p/x', bytes('1e999')), { ok: false, reason: 'payload on topic p/x is not a finite number' });
  assert.deepEqual(decodePayload({ type: 'boolean' }, 'p/x', bytes('maybe')), { ok: false, reason: 'payload on topic p/x is not a boolean (true/false/1/0/on/off)' });
  assert.deepEqual(decodePayload({}, 'p/x', new Uint8Array()), { ok: false, reason: 'empty payload on topic p/x' });
  assert.deepEqual(decodePayload({}, 'p/x', new Uint8Array([0xff, 0xfe])), { ok: false, reason: 'payload on topic p/x is not valid UTF-8' });
});

test('decode: JSON payloads, reasons name topic and path but never the payload', () => {
  const spec = (text: string, extra: Partial<DecodeSpec> = {}): DecodeSpec => ({ json: path(text), ...extra });
  assert.deepEqual(decodePayload(spec('$.v'), 't', bytes('{"v": 3}')), { ok: true, value: 3 });
  assert.deepEqual(decodePayload(spec('$.v'), 't', bytes('{"v": "on"}')), { ok: true, value: 'on' });
  assert.deepEqual(decodePayload(spec('$.v', { type: 'number' }), 't', bytes('{"v": "4.5"}')), { ok: true, value: 4.5 });
  assert.deepEqual(decodePayload(spec('$.v', { type: 'string' }), 't', bytes('{"v": 4.5}')), { ok: true, value: '4.5' });
  assert.deepEqual(decodePayload(spec('$.v'), 't', bytes('{"v": false}')), { ok: true, value: false });
  assert.deepEqual(decodePayload(spec('$.v'), 'p/x', bytes('{"v": SECRET')), { ok: false, reason: 'payload on topic p/x is not valid JSON (path $.v)' });
  assert.deepEqual(decodePayload(spec('$.a.v'), 'p/x', bytes('{"a": {}}')), { ok: false, reason: '$.a.v not found in payload on topic p/x (path $.a.v)' });
  assert.deepEqual(decodePayload(spec('$.v'), 'p/x', bytes('{"v": null}')), { ok: false, reason: '$.v on topic p/x is null' });
  assert.deepEqual(decodePayload(spec('$.v'), 'p/x', bytes('{"v": {"w": 1}}')), { ok: false, reason: '$.v on topic p/x is an object, not a value' });
  assert.deepEqual(decodePayload(spec('$.v'), 'p/x', bytes('{"v": [1]}')), { ok: false, reason: '$.v on topic p/x is an array, not a value' });
  assert.deepEqual(decodePayload(spec('$.v', { type: 'number' }), 'p/x', bytes('{"v": true}')), { ok: false, reason: '$.v on topic p/x is not a number' });
});

test('decode: timestamps', () => {
  const spec: DecodeSpec = { json: path('$.v'), timestamp: path('$.ts') };
  assert.deepEqual(decodePayload(spec, 't', bytes('{"v": 1, "ts": "2026-01-02T03:04:05.678Z"}')), { ok: true, value: 1, sourceTime: Date.parse('2026-01-02T03:04:05.678Z') });
  assert.deepEqual(decodePayload(spec, 't', bytes('{"v": 1, "ts": 1767000000123}')), { ok: true, value: 1, sourceTime: 1767000000123 });
  assert.deepEqual(decodePayload({ ...spec, timestampUnit: 's' }, 't', bytes('{"v": 1, "ts": 1767000000.5}')), { ok: true, value: 1, sourceTime: 1767000000500 });
  assert.deepEqual(decodePayload(spec, 'p/x', bytes('{"v": 1}')), { ok: true, value: 1, warning: 'timestamp $.ts not found on topic p/x; using the receive time' });
  assert.deepEqual(decodePayload(spec, 'p/x', bytes('{"v": 1, "ts": "yesterday"}')), { ok: true, value: 1, warning: 'timestamp $.ts is not a valid time on topic p/x; using the receive time' });
  assert.deepEqual(decodePayload(spec, 'p/x', bytes('{"v": 1, "ts": {}}')), { ok: true, value: 1, warning: 'timestamp $.ts is neither a number nor an ISO 8601 string on topic p/x; using the receive time' });
});
