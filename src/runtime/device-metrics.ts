import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Bytes one run moved between host and device (an estimate from feed and output sizes; zero on the CPU provider). */
export interface TransferReport {
  hostToDevice: number;
  deviceToHost: number;
}

/** Decoder steps also say whether the banks and the KV cache stayed on the device. */
export interface DecoderTransferReport extends TransferReport {
  banksReused: boolean;
  kvOnDevice: boolean;
}

export interface DeviceMetrics {
  onEncoderRun(t: TransferReport): void;
  onDecoderStep(t: DecoderTransferReport): void;
}

const BYTES = [0, 1024, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456];

/**
 * Which execution provider runs, and what crosses between host and device per run: an info gauge
 * (`adapterhost_execution_provider_info{provider}` = 1), a per-run histogram of estimated bytes
 * by engine and direction, and counters of decoder steps whose LoRA banks were reused and whose
 * KV cache stayed on the device (docs/gpu.md).
 */
export function createDeviceMetrics(registry: Registry, provider: string): DeviceMetrics {
  const registers = [registry];
  const info = new Gauge({ name: 'adapterhost_execution_provider_info', help: 'The ONNX Runtime execution provider the engines run on (value 1).', labelNames: ['provider'] as const, registers });
  info.set({ provider }, 1);
  const bytes = new Histogram({
    name: 'adapterhost_device_transfer_bytes', labelNames: ['engine', 'direction'] as const, buckets: BYTES, registers,
    help: 'Bytes moved between host and device by one run (encoder batch or decoder step), estimated from the sizes of host feeds and host outputs; 0 on the CPU provider.',
  });
  const reused = new Counter({ name: 'adapterhost_decoder_steps_banks_reused_total', help: 'Decoder steps that used the previous step\'s LoRA banks again (same adapters: not rebuilt, not uploaded).', registers });
  const onDevice = new Counter({ name: 'adapterhost_decoder_steps_kv_on_device_total', help: 'Decoder steps whose past keys/values were the previous step\'s device tensors (WebGPU, same rows).', registers });
  const observe = (engine: string, t: TransferReport) => {
    bytes.observe({ engine, direction: 'host_to_device' }, t.hostToDevice);
    bytes.observe({ engine, direction: 'device_to_host' }, t.deviceToHost);
  };
  return {
    onEncoderRun: (t) => observe('encoder', t),
    onDecoderStep(t) {
      observe('decoder', t);
      if (t.banksReused) reused.inc();
      if (t.kvOnDevice) onDevice.inc();
    },
  };
}
