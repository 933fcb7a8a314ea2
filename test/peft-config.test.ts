import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AppError } from '../src/errors.js';
import { isTargeted, parsePeftConfig, rankFor, scaleFor, type LoraAdapterConfig } from '../src/adapter/peft-config.js';

/** The demo adapter's config, as written by the project's Python factory (PEFT 0.13.2). */
const DEMO_CONFIG_TEXT =
  '{"alpha_pattern": {"value": 8}, "auto_mapping": null, "base_model_name_or_path": "adapterhost-demo-bert", "bias": "none", "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true, "layer_replication": null, "layers_pattern": null, "layers_to_transform": null, "loftq_config": {}, "lora_alpha": 16, "lora_dropout": 0.1, "megatron_config": null, "megatron_core": "megatron.core", "modules_to_save": ["classifier"], "peft_type": "LORA", "r": 8, "rank_pattern": {"value": 4}, "revision": null, "target_modules": ["query", "value"], "task_type": "SEQ_CLS", "use_dora": false, "use_rslora": false, "peft_version": "0.13.2", "id2label": {"0": "amistad", "1": "ciencia", "2": "informatica"}}';

type AnyConfig = any;
const demo = (): AnyConfig => JSON.parse(DEMO_CONFIG_TEXT);

/** Parses, expecting INVALID_ADAPTER_CONFIG; returns the error. */
function refusal(input: unknown, opts?: Parameters<typeof parsePeftConfig>[1]): AppError {
  try {
    parsePeftConfig(input, opts);
  } catch (e) {
    assert.ok(e instanceof AppError, `expected AppError, got ${String(e)}`);
    assert.equal(e.code, 'INVALID_ADAPTER_CONFIG');
    assert.equal(e.status, 422);
    return e;
  }
  assert.fail('expected parsePeftConfig to refuse the config');
}

test('the demo config parses', () => {
  const cfg = parsePeftConfig(DEMO_CONFIG_TEXT);
  assert.deepEqual(cfg, {
    peftType: 'LORA',
    r: 8,
    loraAlpha: 16,
    targetModules: ['query', 'value'],
    excludeModules: null,
    useRslora: false,
    fanInFanOut: false,
    modulesToSave: ['classifier'],
    bias: 'none',
    taskType: 'SEQ_CLS',
    baseModelNameOrPath: 'adapterhost-demo-bert',
    rankPattern: { value: 4 },
    alphaPattern: { value: 8 },
    layersToTransform: null,
    layersPattern: null,
    labels: ['amistad', 'ciencia', 'informatica'],
  });
  assert.ok(Object.isFrozen(cfg));
});

test('text, bytes (with a BOM) and parsed JSON give the same config', () => {
  const fromText = parsePeftConfig(DEMO_CONFIG_TEXT);
  const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...Buffer.from(DEMO_CONFIG_TEXT)]);
  assert.deepEqual(parsePeftConfig(bytes), fromText);
  assert.deepEqual(parsePeftConfig(Buffer.from(DEMO_CONFIG_TEXT)), fromText);
  assert.deepEqual(parsePeftConfig(demo()), fromText);
});

test('a config stuffed with newer-PEFT fields at inactive values parses', () => {
  const cfg = Object.assign(demo(), {
    alora_invocation_tokens: null,
    corda_config: null,
    eva_config: null,
    use_qalora: false,
    qalora_group_size: 16,
    trainable_token_indices: null,
    target_parameters: null,
    lora_bias: false,
    use_dora: false,
    layer_replication: null,
    megatron_config: null,
    exclude_modules: null,
    arrow_config: null,
    ensure_weight_tying: false,
    peft_version: '0.17.1',
    runtime_config: { ephemeral_gpu_offload: false },
    use_bdlora: null,
    some_future_field: {},
    another_future_flag: false,
  });
  const parsed = parsePeftConfig(cfg);
  assert.equal(parsed.r, 8);
  assert.deepEqual(parsed.labels, ['amistad', 'ciencia', 'informatica']);
});

test('accepted variants: init-only init_lora_weights, eva_config, label2id, layer selection, single layer', () => {
  for (const init of [true, false, 'gaussian', 'eva', 'orthogonal']) {
    const cfg = demo();
    cfg.init_lora_weights = init;
    if (init === 'eva') cfg.eva_config = { rho: 2.0 };
    assert.doesNotThrow(() => parsePeftConfig(cfg), `init_lora_weights ${String(init)}`);
  }
  const withLabel2id = demo();
  withLabel2id.label2id = { amistad: 0, ciencia: 1, informatica: 2 };
  assert.deepEqual(parsePeftConfig(withLabel2id).labels, ['amistad', 'ciencia', 'informatica']);

  const layered = demo();
  Object.assign(layered, { layers_to_transform: 1, layers_pattern: 'layer', exclude_modules: [], fan_in_fan_out: true });
  const parsed = parsePeftConfig(layered);
  assert.deepEqual(parsed.layersToTransform, [1]);
  assert.deepEqual(parsed.layersPattern, ['layer']);
  assert.equal(parsed.excludeModules, null);
  assert.equal(parsed.fanInFanOut, true);

  const noLabels = demo();
  delete noLabels.id2label;
  assert.equal(parsePeftConfig(noLabels).labels, null);
});

const rows: Array<{ name: string; change: (cfg: AnyConfig) => void; expect: RegExp; opts?: { maxRank?: number; maxBytes?: number } }> = [
  { name: 'wrong peft_type', change: (c) => (c.peft_type = 'IA3'), expect: /peft_type "IA3" is not supported/ },
  { name: 'prefix tuning', change: (c) => (c.peft_type = 'PREFIX_TUNING'), expect: /"PREFIX_TUNING" is not supported/ },
  { name: 'missing peft_type', change: (c) => delete c.peft_type, expect: /peft_type is missing/ },
  { name: 'use_dora true', change: (c) => (c.use_dora = true), expect: /use_dora=true: DoRA is not supported/ },
  { name: 'bias "all"', change: (c) => (c.bias = 'all'), expect: /bias "all" is not supported/ },
  { name: 'bias "lora_only"', change: (c) => (c.bias = 'lora_only'), expect: /bias "lora_only" is not supported/ },
  { name: 'lora_bias true', change: (c) => (c.lora_bias = true), expect: /lora_bias=true: LoRA bias vectors/ },
  { name: 'use_qalora true', change: (c) => (c.use_qalora = true), expect: /use_qalora=true: QA-LoRA is not supported/ },
  { name: 'aLoRA tokens', change: (c) => (c.alora_invocation_tokens = [1, 2]), expect: /alora_invocation_tokens=\[1,2\]: activated LoRA/ },
  { name: 'r 0', change: (c) => (c.r = 0), expect: /r must be a positive integer, got 0/ },
  { name: 'r 3.5', change: (c) => (c.r = 3.5), expect: /r must be a positive integer, got 3\.5/ },
  { name: 'r a string', change: (c) => (c.r = '8'), expect: /r must be a positive integer, got "8"/ },
  { name: 'r missing', change: (c) => delete c.r, expect: /r \(the LoRA rank\) is missing/ },
  { name: 'r above maxRank', change: (c) => (c.r = 64), opts: { maxRank: 16 }, expect: /rank 64 exceeds the base model's maximum rank 16/ },
  {
    name: 'rank_pattern above maxRank',
    change: (c) => (c.rank_pattern = { value: 32 }),
    opts: { maxRank: 16 },
    expect: /rank_pattern\["value"\]: rank 32 exceeds the base model's maximum rank 16/,
  },
  { name: 'rank_pattern not an integer', change: (c) => (c.rank_pattern = { value: 2.5 }), expect: /rank_pattern\["value"\] must be a positive integer/ },
  { name: 'alpha_pattern negative', change: (c) => (c.alpha_pattern = { value: -1 }), expect: /alpha_pattern\["value"\] must be a positive number/ },
  { name: 'lora_alpha 0', change: (c) => (c.lora_alpha = 0), expect: /lora_alpha must be a positive number/ },
  { name: 'missing target_modules', change: (c) => delete c.target_modules, expect: /target_modules is missing/ },
  { name: 'null target_modules', change: (c) => (c.target_modules = null), expect: /target_modules is missing/ },
  { name: 'empty target_modules', change: (c) => (c.target_modules = []), expect: /target_modules is empty/ },
  { name: 'non-string target', change: (c) => (c.target_modules = ['query', 3]), expect: /target_modules\[1\] must be a non-empty string/ },
  { name: 'invalid target regex', change: (c) => (c.target_modules = '.*(query'), expect: /target_modules regex ".*\(query" is not a valid regular expression/ },
  { name: 'lookahead (not in RE2)', change: (c) => (c.target_modules = '(?!.*value).*query'), expect: /is not a valid regular expression \(RE2 syntax/ },
  { name: 'backreference (not in RE2)', change: (c) => (c.target_modules = '(query)\\1'), expect: /is not a valid regular expression/ },
  { name: 'a source that only parses once wrapped', change: (c) => (c.target_modules = 'a)|(b'), expect: /target_modules regex "a\)\|\(b" is not a valid regular expression/ },
  { name: 'regex too complex (RE2 program size)', change: (c) => (c.target_modules = '[a-z]{999}[a-z]{999}[a-z]{999}'), expect: /is too complex: it compiles to \d+ RE2 instructions; at most 2000/ },
  {
    name: 'regexes together too complex',
    change: (c) => (c.rank_pattern = Object.fromEntries(Array.from({ length: 25 }, (_, i) => [`x${i}[a-z]{900}`, 4]))),
    expect: /together compile to more than 10000 RE2 instructions/,
  },
  { name: 'too many rank_pattern entries', change: (c) => (c.rank_pattern = Object.fromEntries(Array.from({ length: 4097 }, (_, i) => [`m${i}`, 4]))), expect: /rank_pattern has 4097 entries; at most 4096/ },
  { name: 'oversize regex', change: (c) => (c.target_modules = 'a'.repeat(600)), expect: /600 characters; at most 512/ },
  { name: 'invalid exclude regex', change: (c) => (c.exclude_modules = '['), expect: /exclude_modules regex "\[" is not a valid/ },
  { name: 'invalid rank_pattern key', change: (c) => (c.rank_pattern = { '(': 4 }), expect: /rank_pattern key "\(" is not a valid/ },
  { name: '"all-linear"', change: (c) => (c.target_modules = 'all-linear'), expect: /"all-linear" is not supported/ },
  { name: '"ALL-LINEAR"', change: (c) => (c.target_modules = 'ALL-LINEAR'), expect: /"all-linear" is not supported/ },
  { name: 'pissa init', change: (c) => (c.init_lora_weights = 'pissa_niter_16'), expect: /init_lora_weights "pissa_niter_16" is not supported: .*modifies the base weights/ },
  { name: 'olora init', change: (c) => (c.init_lora_weights = 'olora'), expect: /init_lora_weights "olora" is not supported/ },
  { name: 'corda init', change: (c) => (c.init_lora_weights = 'corda'), expect: /init_lora_weights "corda" is not supported/ },
  { name: 'loftq init', change: (c) => (c.init_lora_weights = 'loftq'), expect: /init_lora_weights "loftq" is not supported/ },
  { name: 'unknown init', change: (c) => (c.init_lora_weights = 'magic'), expect: /init_lora_weights "magic" is not a recognised initialisation/ },
  { name: 'loftq_config non-empty', change: (c) => (c.loftq_config = { loftq_bits: 4 }), expect: /loftq_config=\{"loftq_bits":4\}: LoftQ modifies the base weights/ },
  { name: 'corda_config set', change: (c) => (c.corda_config = { cache_file: 'x' }), expect: /corda_config=.*CorDA modifies the base weights/ },
  { name: 'layer_replication', change: (c) => (c.layer_replication = [[0, 4], [2, 5]]), expect: /layer_replication=\[\[0,4\],\[2,5\]\]: layer replication/ },
  { name: 'megatron_config', change: (c) => (c.megatron_config = { tp: 2 }), expect: /megatron_config=.*Megatron/ },
  { name: 'trainable tokens', change: (c) => (c.trainable_token_indices = [5]), expect: /trainable_token_indices=\[5\]: trainable token embeddings/ },
  { name: 'target_parameters', change: (c) => (c.target_parameters = ['w']), expect: /target_parameters=\["w"\]: LoRA on parameters/ },
  { name: 'arrow_config', change: (c) => (c.arrow_config = { top_k: 3 }), expect: /arrow_config=.*Arrow routing/ },
  { name: 'unknown active field', change: (c) => (c.use_magic = true), expect: /unknown field "use_magic" with a non-default value true; the engine cannot apply it/ },
  { name: 'unknown numeric field', change: (c) => (c.magic_scale = 2), expect: /unknown field "magic_scale"/ },
  { name: 'use_rslora not boolean', change: (c) => (c.use_rslora = 'yes'), expect: /use_rslora must be true or false/ },
  { name: 'modules_to_save not a list', change: (c) => (c.modules_to_save = 'classifier'), expect: /modules_to_save must be null or a list/ },
  { name: 'task_type not a string', change: (c) => (c.task_type = 3), expect: /task_type must be a string or null/ },
  { name: 'layers_to_transform negative', change: (c) => (c.layers_to_transform = [-1]), expect: /layers_to_transform must be null, a layer index or a list/ },
  { name: 'layers_pattern without layers', change: (c) => (c.layers_pattern = 'layer'), expect: /layers_pattern is set but layers_to_transform is not/ },
  {
    name: 'layers with a regex target',
    change: (c) => Object.assign(c, { target_modules: '.*query', layers_to_transform: [0] }),
    expect: /layers_to_transform cannot be used when target_modules is a regex/,
  },
  { name: 'bad id2label keys', change: (c) => (c.id2label = { '1': 'a', '2': 'b' }), expect: /id2label keys must be exactly "0".."1"; unexpected keys: "2"/ },
  { name: 'non-canonical id2label key', change: (c) => (c.id2label = { '00': 'a' }), expect: /unexpected keys: "00"/ },
  { name: 'empty id2label', change: (c) => (c.id2label = {}), expect: /id2label is empty/ },
  { name: 'duplicate labels', change: (c) => (c.id2label = { '0': 'spam', '1': 'spam' }), expect: /duplicate label "spam"/ },
  { name: 'empty label', change: (c) => (c.id2label = { '0': ' ', '1': 'spam' }), expect: /id2label\["0"\] must be a non-empty string/ },
  {
    name: 'too many labels',
    change: (c) => (c.id2label = Object.fromEntries(Array.from({ length: 4097 }, (_, i) => [String(i), `l${i}`]))),
    expect: /id2label has 4097 labels; at most 4096/,
  },
  {
    name: 'label2id disagreeing',
    change: (c) => (c.label2id = { amistad: 0, ciencia: 2, informatica: 1 }),
    expect: /label2id does not agree with id2label \("ciencia": 2, "informatica": 1\)/,
  },
  { name: 'label2id missing a label', change: (c) => (c.label2id = { amistad: 0, ciencia: 1 }), expect: /label2id does not agree with id2label \(2 entries for 3 labels\)/ },
  { name: 'label2id without id2label', change: (c) => Object.assign(c, { id2label: null, label2id: { a: 0 } }), expect: /label2id is present without id2label/ },
];

for (const row of rows) {
  test(`refuses: ${row.name}`, () => {
    const cfg = demo();
    row.change(cfg);
    const err = refusal(JSON.stringify(cfg), row.opts);
    assert.match(err.message, row.expect);
    assert.ok(err.problems.some((p) => row.expect.test(p)), `a problem should match ${row.expect}: ${err.problems.join(' | ')}`);
  });
}

const inputRows: Array<{ name: string; input: unknown; opts?: { maxBytes?: number }; expect: RegExp }> = [
  { name: 'text not JSON', input: '{"peft_type": "LORA",', expect: /not valid JSON/ },
  { name: 'JSON array', input: '[1, 2]', expect: /expected a JSON object, got an array/ },
  { name: 'JSON null', input: 'null', expect: /expected a JSON object, got null/ },
  { name: 'parsed number', input: 42, expect: /expected a JSON object, got a number/ },
  { name: 'invalid UTF-8 bytes', input: new Uint8Array([0x7b, 0xff, 0x7d]), expect: /not valid UTF-8/ },
  { name: 'oversize text (default 1 MiB)', input: `{"x": "${'a'.repeat(1024 * 1024)}"}`, expect: /larger than the 1048576-byte limit/ },
  { name: 'oversize text (maxBytes)', input: DEMO_CONFIG_TEXT, opts: { maxBytes: 100 }, expect: /larger than the 100-byte limit/ },
  { name: 'oversize multibyte text', input: `"${'é'.repeat(60)}"`, opts: { maxBytes: 100 }, expect: /larger than the 100-byte limit/ },
  { name: 'oversize bytes', input: Buffer.from(DEMO_CONFIG_TEXT), opts: { maxBytes: 100 }, expect: /larger than the 100-byte limit/ },
];

for (const row of inputRows) {
  test(`refuses input: ${row.name}`, () => {
    const err = refusal(row.input, row.opts);
    assert.match(err.message, row.expect);
    assert.equal(err.problems.length, 1);
  });
}

test('a config with several problems reports all of them in one error', () => {
  const cfg = demo();
  Object.assign(cfg, { use_dora: true, bias: 'all', r: 0, target_modules: 'all-linear', id2label: { '0': 'a', '1': 'a' }, mystery: 1 });
  const err = refusal(cfg);
  const expected = [/DoRA is not supported/, /bias "all"/, /r must be a positive integer/, /"all-linear"/, /duplicate label "a"/, /unknown field "mystery"/];
  assert.equal(err.problems.length, expected.length, err.problems.join(' | '));
  for (const re of expected) {
    assert.ok(err.problems.some((p) => re.test(p)), `missing ${re}`);
    assert.match(err.message, re);
  }
  assert.match(err.message, /^invalid adapter_config\.json: \(1\) /);
});

test('invalid options are a programming error', () => {
  assert.throws(() => parsePeftConfig(DEMO_CONFIG_TEXT, { maxRank: 0 }), RangeError);
  assert.throws(() => parsePeftConfig(DEMO_CONFIG_TEXT, { maxBytes: -1 }), RangeError);
  assert.doesNotThrow(() => parsePeftConfig(DEMO_CONFIG_TEXT, { maxRank: 8 }));
});

function config(change: (c: AnyConfig) => void): LoraAdapterConfig {
  const c = demo();
  change(c);
  return parsePeftConfig(c);
}

const Q = 'bert.encoder.layer.0.attention.self.query';
const V = 'bert.encoder.layer.0.attention.self.value';
const K = 'bert.encoder.layer.0.attention.self.key';
const Q3 = 'bert.encoder.layer.3.attention.self.query';

const targetRows: Array<{ name: string; change: (c: AnyConfig) => void; yes: string[]; no: string[] }> = [
  { name: 'list: suffix after a dot', change: () => {}, yes: [Q, V, 'query'], no: [K, 'bert.encoder.layer.0.attention.self.myquery', 'classifier'] },
  {
    name: 'regex: fullmatch',
    change: (c) => (c.target_modules = '.*\\.(query|key)'),
    yes: [Q, K],
    no: [V, `${Q}.extra`, 'query'],
  },
  { name: 'regex: anchored at both ends', change: (c) => (c.target_modules = 'query'), yes: ['query'], no: [Q] },
  { name: 'exclude list', change: (c) => (c.exclude_modules = ['layer.0.attention.self.value']), yes: [Q, 'bert.encoder.layer.1.attention.self.value'], no: [V] },
  { name: 'exclude regex', change: (c) => (c.exclude_modules = '.*layer\\.0\\..*'), yes: [Q3], no: [Q, V] },
  { name: 'layers_to_transform (default layer pattern)', change: (c) => (c.layers_to_transform = [3]), yes: [Q3], no: [Q, 'bert.query'] },
  { name: 'layers_to_transform int + layers_pattern', change: (c) => Object.assign(c, { layers_to_transform: 0, layers_pattern: ['layer'] }), yes: [Q], no: [Q3, 'bert.encoder.block.0.query'] },
  { name: 'layers_to_transform: an exact path is always targeted', change: (c) => Object.assign(c, { target_modules: [Q3, 'value'], layers_to_transform: [0] }), yes: [Q3, V], no: [Q] },
];

for (const row of targetRows) {
  test(`isTargeted: ${row.name}`, () => {
    const cfg = config(row.change);
    for (const p of row.yes) assert.equal(isTargeted(cfg, p), true, p);
    for (const p of row.no) assert.equal(isTargeted(cfg, p), false, p);
  });
}

test('rankFor / scaleFor: demo rank_pattern and alpha_pattern ("value" → r 4, alpha 8)', () => {
  const cfg = parsePeftConfig(DEMO_CONFIG_TEXT);
  assert.equal(rankFor(cfg, Q), 8);
  assert.equal(scaleFor(cfg, Q), 16 / 8);
  assert.equal(rankFor(cfg, V), 4);
  assert.equal(scaleFor(cfg, V), 8 / 4);
  // The key must match a whole trailing part of the path: "value" does not match "myvalue".
  assert.equal(rankFor(cfg, 'bert.encoder.layer.0.attention.self.myvalue'), 8);
});

test('rankFor / scaleFor: regex keys, first matching key wins', () => {
  const cfg = config((c) => {
    c.rank_pattern = { 'layer\\.0\\..*': 2, 'layer\\.\\d+\\.attention\\.self\\.query': 6 };
    c.alpha_pattern = { 'layer\\.[0-9]\\.attention\\.self\\.query': 12 };
  });
  assert.equal(rankFor(cfg, Q), 2);
  assert.equal(rankFor(cfg, Q3), 6);
  assert.equal(rankFor(cfg, V.replace('layer.0', 'layer.5')), 8);
  assert.equal(scaleFor(cfg, Q), 12 / 2);
  assert.equal(scaleFor(cfg, Q3), 12 / 6);
});

test('scaleFor: rsLoRA uses alpha / sqrt(r), with patterns', () => {
  const cfg = config((c) => Object.assign(c, { use_rslora: true, r: 16, rank_pattern: { value: 4 }, alpha_pattern: {} }));
  assert.equal(scaleFor(cfg, Q), 16 / Math.sqrt(16));
  assert.equal(scaleFor(cfg, V), 16 / Math.sqrt(4));
});

// ---------------------------------------------------------------------------------------
// Regular-expression denial of service: every config regex runs on RE2 (linear time).

/**
 * Patterns that take a backtracking engine (JavaScript's RegExp, Python's re) exponential or
 * high-polynomial time on a near-miss input: with RegExp, `(a+)+$` on 24 a's and a "!" took
 * 1.4 s, `(a|aa)+$` on 36 took 3.6 s, `(.*a){20}` on 60 did not finish in a minute.
 */
const SLOW_PATH = `${'a'.repeat(64)}!`;
const ONLY_AS = 'a'.repeat(64);
const FAST_MS = 500;

/**
 * Each pattern with what Python's re says (worked out by hand): does it fullmatch SLOW_PATH,
 * ONLY_AS; does it match a trailing part of `bert.<SLOW_PATH>` (rank_pattern, alpha_pattern)
 * and stand before `.0.` in `bert.<SLOW_PATH>.0.attention.self.query` (layers_pattern).
 */
const CATASTROPHIC: Array<{ pattern: string; slow: boolean; onlyAs: boolean; key: boolean }> = [
  { pattern: '(a+)+$', slow: false, onlyAs: true, key: false },
  { pattern: '(a|aa)+$', slow: false, onlyAs: true, key: false },
  { pattern: '(.*a){20}', slow: false, onlyAs: true, key: false },
  { pattern: '(a*)*b', slow: false, onlyAs: false, key: false },
  { pattern: '([a-z.]+)+X', slow: false, onlyAs: false, key: false },
  { pattern: '(\\w+\\.?)+!', slow: true, onlyAs: false, key: true },
];

const timed = <T>(fn: () => T): { value: T; ms: number } => {
  const t0 = performance.now();
  const value = fn();
  return { value, ms: performance.now() - t0 };
};

for (const { pattern, slow, onlyAs, key } of CATASTROPHIC) {
  test(`ReDoS: ${pattern} as target_modules, exclude_modules, rank_pattern, alpha_pattern and layers_pattern: fast, and right`, { timeout: 20_000 }, () => {
    const target = timed(() => {
      const cfg = config((c) => (c.target_modules = pattern));
      return [isTargeted(cfg, SLOW_PATH), isTargeted(cfg, ONLY_AS)];
    });
    assert.ok(target.ms < FAST_MS, `target_modules took ${target.ms.toFixed(0)} ms`);
    assert.deepEqual(target.value, [slow, onlyAs]);

    const exclude = timed(() => {
      const cfg = config((c) => (c.exclude_modules = pattern));
      return [isTargeted(cfg, SLOW_PATH), isTargeted(cfg, `x.${ONLY_AS}.query`), isTargeted(cfg, Q)];
    });
    assert.ok(exclude.ms < FAST_MS, `exclude_modules took ${exclude.ms.toFixed(0)} ms`);
    // Targets are the list query/value: SLOW_PATH is never a target; the others are unless excluded.
    assert.deepEqual(exclude.value, [false, true, true]);

    const patterns = timed(() => {
      const cfg = config((c) => Object.assign(c, { rank_pattern: { [pattern]: 2 }, alpha_pattern: { [pattern]: 3 } }));
      return [rankFor(cfg, `bert.${SLOW_PATH}`), scaleFor(cfg, `bert.${SLOW_PATH}`), rankFor(cfg, Q)];
    });
    assert.ok(patterns.ms < FAST_MS, `rank_pattern/alpha_pattern took ${patterns.ms.toFixed(0)} ms`);
    assert.deepEqual(patterns.value, key ? [2, 3 / 2, 8] : [8, 16 / 8, 8]);

    const layers = timed(() => {
      const cfg = config((c) => Object.assign(c, { layers_to_transform: [0], layers_pattern: pattern }));
      return isTargeted(cfg, `bert.${SLOW_PATH}.0.attention.self.query`);
    });
    assert.ok(layers.ms < FAST_MS, `layers_pattern took ${layers.ms.toFixed(0)} ms`);
    assert.equal(layers.value, key);
  });
}

test('ReDoS: matching a catastrophic pattern against a long path stays linear', { timeout: 20_000 }, () => {
  const cfg = config((c) => Object.assign(c, { target_modules: '(a|aa)+$', rank_pattern: { '(.*a){20}': 2 } }));
  const long = `${'a'.repeat(5000)}!`;
  const { ms, value } = timed(() => [isTargeted(cfg, long), rankFor(cfg, long), isTargeted(cfg, 'a'.repeat(5000))]);
  assert.ok(ms < 2 * FAST_MS, `took ${ms.toFixed(0)} ms`);
  assert.deepEqual(value, [false, 8, true]);
});

test('RE2 accepts what PEFT configs use, with Python semantics', () => {
  // Python named groups and inline flags work in RE2 (they did not in JavaScript's RegExp).
  const named = config((c) => (c.target_modules = '.*\\.(?P<m>query|value)'));
  assert.equal(isTargeted(named, Q), true);
  assert.equal(isTargeted(named, K), false);
  const flags = config((c) => (c.target_modules = '(?i).*\\.QUERY'));
  assert.equal(isTargeted(flags, Q), true);
  // Typical LLaMA-style patterns.
  const llama = config((c) => Object.assign(c, { target_modules: '.*\\.layers\\.\\d+\\.self_attn\\.(q_proj|v_proj)', rank_pattern: { 'model.layers.1.self_attn.q_proj': 4 } }));
  assert.equal(isTargeted(llama, 'model.layers.12.self_attn.q_proj'), true);
  assert.equal(isTargeted(llama, 'model.layers.12.mlp.up_proj'), false);
  assert.equal(rankFor(llama, 'base_model.model.model.layers.1.self_attn.q_proj'), 4);
  assert.equal(rankFor(llama, 'model.layers.11.self_attn.q_proj'), 8);
});

test('literal rank_pattern keys (EVA writes one per module) match like the regex, without one', () => {
  // `.` in a key is any character, as in the regex; `\.` a dot; the key must match a whole trailing part of the path.
  const keys = { 'layer.0.attention.self.query': 2, 'layer\\.1\\.attention\\.self\\.value': 3, 'self.key': 5 };
  const cfg = config((c) => (c.rank_pattern = keys));
  const cases: Array<[string, number]> = [
    ['bert.encoder.layer.0.attention.self.query', 2],
    ['layer.0.attention.self.query', 2],
    ['bert.encoder.layerX0.attention.self.query', 2], // "." matches any character
    ['bert.encoder.xlayer.0.attention.self.query', 8], // must start after a dot
    ['bert.encoder.layer.1.attention.self.value', 3],
    ['bert.encoder.layer.1Xattention.self.value', 8], // "\." is a dot
    ['bert.encoder.layer.2.attention.self.key', 5],
    ['bert.encoder.layer.2.attention.selfXkey', 5],
    ['key', 8],
    ['bert.encoder.layer.0.attention.self.query\nx', 8],
  ];
  for (const [path, r] of cases) assert.equal(rankFor(cfg, path), r, path);
  // The same keys through the regex path (a non-literal character forces RE2) agree.
  const viaRegex = config((c) => (c.rank_pattern = Object.fromEntries(Object.entries(keys).map(([k, v]) => [`(?:${k})`, v]))));
  for (const [path, r] of cases) assert.equal(rankFor(viaRegex, path), r, `regex: ${path}`);
  // Thousands of literal keys parse quickly (no regex is compiled for them).
  const many = Object.fromEntries(Array.from({ length: 4096 }, (_, i) => [`model.layers.${i}.self_attn.q_proj`, 4]));
  const { ms } = timed(() => rankFor(config((c) => (c.rank_pattern = many)), 'model.layers.4095.self_attn.q_proj'));
  assert.ok(ms < 2 * FAST_MS, `4096 literal keys took ${ms.toFixed(0)} ms`);
});

test('optional fields written as null, or left out, mean their default: the same config as the demo', () => {
  // Python's json.dump writes None as null: PEFT configs carry many nulls, and any of them may
  // be missing in a config written by an older or newer PEFT.
  const optional = ['exclude_modules', 'use_rslora', 'fan_in_fan_out', 'use_dora', 'layers_to_transform', 'layers_pattern',
    'init_lora_weights', 'eva_config', 'bias', 'revision', 'base_model_name_or_path', 'task_type', 'megatron_config',
    'loftq_config', 'layer_replication', 'auto_mapping', 'inference_mode', 'lora_dropout', 'peft_version'];
  const base = parsePeftConfig(DEMO_CONFIG_TEXT);
  for (const field of optional) {
    for (const value of [null, undefined]) {
      const raw = demo();
      if (value === undefined) delete raw[field];
      else raw[field] = value;
      let cfg: LoraAdapterConfig;
      try {
        cfg = parsePeftConfig(raw);
      } catch (e) {
        assert.fail(`${field} = ${String(value)} refused: ${(e as Error).message}`);
      }
      for (const key of ['r', 'loraAlpha', 'targetModules', 'excludeModules', 'useRslora', 'fanInFanOut', 'modulesToSave', 'rankPattern', 'alphaPattern', 'layersToTransform', 'layersPattern'] as const) {
        assert.deepEqual(cfg[key], base[key], `${field} = ${String(value)}: ${key}`);
      }
    }
  }
  // rank_pattern, alpha_pattern and modules_to_save as null: empty.
  for (const field of ['rank_pattern', 'alpha_pattern']) {
    const raw = demo();
    raw[field] = null;
    const cfg = parsePeftConfig(raw);
    assert.deepEqual(field === 'rank_pattern' ? cfg.rankPattern : cfg.alphaPattern, {});
  }
  const raw = demo();
  raw.modules_to_save = null;
  assert.deepEqual(parsePeftConfig(raw).modulesToSave, []);
});

test('wrong types for optional fields are refused, each naming the field and the value', () => {
  const rows: Array<[string, unknown, RegExp]> = [
    ['use_rslora', 'yes', /use_rslora must be true or false, got "yes"/],
    ['fan_in_fan_out', 1, /fan_in_fan_out must be true or false, got 1/],
    ['rank_pattern', [1], /rank_pattern must be an object mapping module patterns to numbers, got \[1\]/],
    ['alpha_pattern', 'x', /alpha_pattern must be an object mapping module patterns to numbers, got "x"/],
    ['layers_to_transform', [1, -1], /layers_to_transform/],
    ['layers_to_transform', [1.5], /layers_to_transform/],
    ['layers_pattern', [''], /layers_pattern must be null, a string or a list of non-empty strings, got \[""\]/],
    ['layers_pattern', 5, /layers_pattern must be null, a string or a list of non-empty strings, got 5/],
    ['init_lora_weights', 3, /init_lora_weights must be a boolean or a string, got 3/],
    ['eva_config', 'x', /eva_config must be null or an object/],
    ['modules_to_save', [''], /modules_to_save must be null or a list of module na/],
    ['modules_to_save', 'classifier', /modules_to_save must be null or a list of module na/],
    ['exclude_modules', 5, /exclude_modules must be null, a list of module names or a regex string, got 5/],
    ['target_modules', 5, /target_modules must be a list of module names or a regex string, got 5/],
    ['id2label', [1], /id2label must be an object such as \{"0": "ham", "1": "spam"\}, got \[1\]/],
    ['label2id', 'x', /label2id must be an object mapping labels to indices, got "x"/],
    ['peft_type', 5, /peft_type must be the string "LORA", got 5/],
    ['bias', 'all', /bias/],
  ];
  for (const [field, value, re] of rows) {
    const raw = demo();
    raw[field] = value;
    assert.match(refusal(raw).message, re, `${field} = ${JSON.stringify(value)}`);
  }
  const noAlpha = demo();
  delete noAlpha.lora_alpha;
  assert.match(refusal(noAlpha).message, /lora_alpha is missing/);
});
