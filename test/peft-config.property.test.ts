import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AppError } from '../src/errors.js';
import { isTargeted, parsePeftConfig, rankFor, scaleFor } from '../src/adapter/peft-config.js';
import { propertyParams } from './helpers/property-seed.js';

const DEMO: Record<string, unknown> = {
  alpha_pattern: { value: 8 },
  auto_mapping: null,
  base_model_name_or_path: 'adapterhost-demo-bert',
  bias: 'none',
  fan_in_fan_out: false,
  inference_mode: true,
  init_lora_weights: true,
  layer_replication: null,
  layers_pattern: null,
  layers_to_transform: null,
  loftq_config: {},
  lora_alpha: 16,
  lora_dropout: 0.1,
  megatron_config: null,
  megatron_core: 'megatron.core',
  modules_to_save: ['classifier'],
  peft_type: 'LORA',
  r: 8,
  rank_pattern: { value: 4 },
  revision: null,
  target_modules: ['query', 'value'],
  task_type: 'SEQ_CLS',
  use_dora: false,
  use_rslora: false,
  peft_version: '0.13.2',
  id2label: { '0': 'amistad', '1': 'ciencia', '2': 'informatica' },
};

const SEED = 20240611;
const RUNS = 500;
const PATHS = ['bert.encoder.layer.0.attention.self.query', 'bert.encoder.layer.1.output.dense', 'classifier', ''];

/**
 * Parses; any outcome but a config or INVALID_ADAPTER_CONFIG fails the property.
 * Returns whether the input parsed.
 */
function parsesOrRefuses(input: unknown, opts?: { maxRank?: number; maxBytes?: number }): boolean {
  let cfg;
  try {
    cfg = parsePeftConfig(input, opts);
  } catch (e) {
    assert.ok(e instanceof AppError, `threw a non-AppError: ${String(e)}`);
    assert.equal(e.code, 'INVALID_ADAPTER_CONFIG');
    assert.ok(e.message.length > 0);
    return false;
  }
  // A config that parses must also be usable by the matchers.
  for (const p of PATHS) {
    isTargeted(cfg, p);
    assert.ok(rankFor(cfg, p) > 0);
    assert.ok(Number.isFinite(scaleFor(cfg, p)) && scaleFor(cfg, p) > 0);
  }
  return true;
}

const keys = fc.constantFrom(
  ...Object.keys(DEMO),
  'exclude_modules',
  'label2id',
  'use_qalora',
  'eva_config',
  'lora_bias',
  'trainable_token_indices',
  'unknown_field',
);

/** Values biased towards the shapes the parser distinguishes. */
const values = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(null, false, true, 0, -1, 3.5, 8, 64, '', 'all-linear', '(', '.*query', 'none', 'all', 'pissa', [], {}),
  fc.array(fc.oneof(fc.string(), fc.integer()), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(fc.integer({ min: -2, max: 40 }), fc.string({ maxLength: 6 })), { maxKeys: 4 }),
);

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key: keys, value: values }),
  fc.record({ kind: fc.constant('delete' as const), key: keys }),
  fc.record({ kind: fc.constant('set' as const), key: fc.string({ maxLength: 8 }), value: values }),
);

test('arbitrary JSON text is parsed or refused with INVALID_ADAPTER_CONFIG', (t) => {
  fc.assert(
    fc.property(fc.json({ maxDepth: 4 }), (text) => void parsesOrRefuses(text)),
    propertyParams(t, SEED, RUNS),
  );
});

test('arbitrary strings and bytes are parsed or refused with INVALID_ADAPTER_CONFIG', (t) => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.uint8Array({ maxLength: 64 })), (input) => void parsesOrRefuses(input)),
    propertyParams(t, SEED, RUNS),
  );
});

test('arbitrary parsed JSON values are parsed or refused with INVALID_ADAPTER_CONFIG', (t) => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), (value) => void parsesOrRefuses(value)),
    propertyParams(t, SEED, RUNS),
  );
});

test('mutated demo configs are parsed or refused with INVALID_ADAPTER_CONFIG', (t) => {
  const outcomes = { parsed: 0, refused: 0 };
  fc.assert(
    fc.property(
      fc.array(mutation, { minLength: 1, maxLength: 5 }),
      fc.option(fc.integer({ min: 1, max: 64 }), { nil: undefined }),
      fc.boolean(),
      (mutations, maxRank, asText) => {
        const cfg: Record<string, unknown> = structuredClone(DEMO);
        for (const m of mutations) {
          if (m.kind === 'delete') delete cfg[m.key];
          else Object.defineProperty(cfg, m.key, { value: m.value, enumerable: true, writable: true, configurable: true });
        }
        outcomes[parsesOrRefuses(asText ? JSON.stringify(cfg) : cfg, { maxRank }) ? 'parsed' : 'refused'] += 1;
      },
    ),
    propertyParams(t, SEED, RUNS),
  );
  // Both paths must be exercised for the property to mean something.
  assert.ok(outcomes.parsed > 20 && outcomes.refused > 20, JSON.stringify(outcomes));
});
