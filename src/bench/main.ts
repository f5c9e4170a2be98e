import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { bundledModelDir } from '../config/load';
import { DEFAULT_CHUNK_TOKENS, DEFAULT_MAX_BATCH_TOKENS } from '../inference/engine';
import { loadModelPackage } from '../inference/manifest';
import { measureCacheLatency, predictOnce } from './cache-latency';
import { measureDaemonRun, type DaemonRunFigures } from './daemon-throughput';
import { loadAverage, readCpuInfo } from './machine';
import { measureMemoryBreakdown, runStage, type EngineVariant } from './memory-breakdown';
import { printModelFormats } from './model-formats';
import { measureModelLatency, syntheticProtein } from './model-latency';
import { benchProteinsFile, readProteins } from './proteins';
import { median } from './stats';
import { measureQuantizedSpeedup, printQuantizedSpeedup, type WorkloadLatency } from './quantized-speedup';
import { measureTorchReference, printTorchReference } from './torch-reference';
import { printVariantScan } from './variant-scan';

const RUNS = 30;
const CACHE_LOOKUPS = 10_000;
const PROTEIN_RESIDUES = 400;
const FORMAT_ROUNDS = 20;
const SPEEDUP_ROUNDS = 30;
const PROFILE_RUNS = 20;
const TORCH_RUNS = 20;
/** Sequences per predict() call of the model-only throughput: the daemon's job processor claims 8 jobs at once. */
const PROCESSOR_BATCH_SIZE = 8;
/** Rounds of (c), each a daemon run and a model-only run in alternating order, so a change in machine load hits both. */
const THROUGHPUT_ROUNDS = 3;

/** Daemon settings that might lower its peak memory further: parts of 64 tokens and runs of at most 256 tokens. */
const LOW_MEMORY_ENV = { BITNET_EDGE_MODEL_CHUNK_TOKENS: '64', BITNET_EDGE_MODEL_MAX_BATCH_TOKENS: '256' };

const TARGETS = { quantizedSpeedup: 2.5, torchSpeedup: 10, daemonShare: 0.85, peakRssBytes: 120e6 };

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MiB`;
const load = (): string => `load average ${loadAverage()}`;

function printMachine(modelDir: string): void {
  const cpu = readCpuInfo();
  const clock = cpu.clockMhz ? `, ${cpu.clockMhz.toFixed(0)} MHz` : '';
  console.log(`date: ${new Date().toISOString()}`);
  console.log(`machine: ${cpu.modelName}, ${cpu.cores} cores${clock}, flags ${cpu.kernelFlags.join(' ') || 'none of interest'}, ${os.arch()}, ${mib(os.totalmem())} RAM`);
  console.log(`Node ${process.version}, ${load()}`);
  console.log(`model: ${modelDir}`);
}

async function printLatencies(modelDir: string, protein: string): Promise<number> {
  const single = await measureModelLatency(modelDir, protein, 1, RUNS);
  const automatic = await measureModelLatency(modelDir, protein, 0, RUNS);
  const spinning = await measureModelLatency(modelDir, protein, 0, RUNS, 3, { allowSpinning: true });
  console.log(`\nlatency of one ${PROTEIN_RESIDUES}-residue protein, predict() through the worker, ${RUNS} runs (${load()}):`);
  console.log(`  1 thread:                         median ${single.medianMs.toFixed(2)} ms, p90 ${single.p90Ms.toFixed(2)} ms`);
  console.log(`  default threads, spinning off:    median ${automatic.medianMs.toFixed(2)} ms, p90 ${automatic.p90Ms.toFixed(2)} ms`);
  console.log(`  default threads, spinning on:     median ${spinning.medianMs.toFixed(2)} ms, p90 ${spinning.p90Ms.toFixed(2)} ms`);
  console.log(`  ratio 1 thread / default: ${(single.medianMs / automatic.medianMs).toFixed(2)}x, spinning off / on: ${(automatic.medianMs / spinning.medianMs).toFixed(2)}x`);
  return automatic.medianMs;
}

async function printCacheLatency(modelDir: string, protein: string, inferenceMs: number): Promise<void> {
  const cache = measureCacheLatency(await predictOnce(modelDir, protein), CACHE_LOOKUPS);
  console.log(`\n(d) exact in-memory cache hit, ${cache.lookups} lookups, prediction JSON of ${cache.predictionJsonLength} characters:`);
  console.log(`  ResultCache.get:            median ${cache.getMedianUs.toFixed(3)} us`);
  console.log(`  key + get (processor path): median ${cache.processorHitMedianUs.toFixed(3)} us`);
  console.log(`  JSON.parse of the entry:    median ${cache.jsonParseMedianUs.toFixed(3)} us`);
  console.log(`  ratio inference (default threads) / processor hit: ${((inferenceMs * 1000) / cache.processorHitMedianUs).toFixed(0)}x`);
}

async function printSpeedups(modelDir: string, repoRoot: string): Promise<WorkloadLatency[] | null> {
  console.log(`\n(a) quantized ONNX graph against the float32 graph of the same network, onnxruntime-node, 1 thread, ${SPEEDUP_ROUNDS} interleaved rounds:`);
  const speedup = await measureQuantizedSpeedup({ modelDir, repoRoot, rounds: SPEEDUP_ROUNDS, warmUpRounds: 3, profileRuns: PROFILE_RUNS });
  if (speedup) printQuantizedSpeedup(await loadModelPackage(modelDir), speedup, TARGETS.quantizedSpeedup);

  console.log(`\n(b) PyTorch float32, eager, no cache (training/bench_torch.py) against the quantized ONNX graph, 1 thread (${load()}):`);
  const torch = measureTorchReference(modelDir, repoRoot, TORCH_RUNS);
  if (torch && speedup) printTorchReference(torch, speedup.workloads, TARGETS.torchSpeedup);
  else if (torch) console.log('  no onnxruntime figures to compare with, because part (a) was skipped');
  return speedup?.workloads ?? null;
}

async function printThroughputAndMemory(modelDir: string, repoRoot: string): Promise<void> {
  const proteinsFile = benchProteinsFile(repoRoot);
  const proteins = readProteins(proteinsFile);
  const residues = proteins.reduce((sum, protein) => sum + protein.residues.length, 0);
  const mainScript = path.resolve(__dirname, '..', 'cli', 'main.js');

  const defaults = { intraOpThreads: 0 };
  const base = { modelDir, proteinsFile, batchSize: PROCESSOR_BATCH_SIZE };
  const runDaemon = async (): Promise<DaemonRunFigures> =>
    measureDaemonRun({ mainScript, modelDir, port: await freePort(), proteinsFile, proteins: proteins.length });
  const runModel = (): number => runStage({ ...base, stage: 'inference', engine: defaults }).inferenceSeconds!;
  const rounds: Array<{ daemon: DaemonRunFigures; modelSeconds: number; load: string }> = [];
  for (let round = 0; round < THROUGHPUT_ROUNDS; round++) {
    let daemonRun: DaemonRunFigures;
    let modelSeconds: number;
    if (round % 2 === 0) {
      daemonRun = await runDaemon();
      modelSeconds = runModel();
    } else {
      modelSeconds = runModel();
      daemonRun = await runDaemon();
    }
    rounds.push({ daemon: daemonRun, modelSeconds, load: load() });
  }
  // The memory figures come from the daemon run with the highest peak.
  const daemon = rounds.map((round) => round.daemon).reduce((a, b) => (b.peakRssBytes > a.peakRssBytes ? b : a));
  const lowMemory = await measureDaemonRun({ mainScript, modelDir, port: await freePort(), proteinsFile, proteins: proteins.length, env: LOW_MEMORY_ENV });
  const lowMemoryLoad = load();
  const variants: EngineVariant[] = [
    { label: `daemon defaults (parts of ${DEFAULT_CHUNK_TOKENS}, maxBatchTokens ${DEFAULT_MAX_BATCH_TOKENS})`, engine: defaults },
    { label: 'each window in one run (chunkTokens 0)', engine: { ...defaults, chunkTokens: 0 } },
    { label: 'maxBatchTokens 4096', engine: { ...defaults, maxBatchTokens: 4096 } },
    { label: 'padded to 64/128/256/512 tokens', engine: { ...defaults, padLengths: [64, 128, 256, 512] } },
    { label: 'onnxruntime arena and memory pattern off', engine: { ...defaults, session: { cpuMemArena: false, memPattern: false } } },
  ];
  const breakdown = measureMemoryBreakdown(base, defaults, variants);

  console.log(`\n(c) throughput, ${proteins.length} proteins of ${path.relative(repoRoot, proteinsFile)} (${residues} residues), ${THROUGHPUT_ROUNDS} rounds:`);
  rounds.forEach(({ daemon: run, modelSeconds, load: roundLoad }, round) => {
    console.log(
      `  round ${round + 1}: daemon, inbox file to done/ (${run.results} results committed) ${run.secondsToDone.toFixed(1)} s, ` +
        `model only, predict() in calls of ${PROCESSOR_BATCH_SIZE} ${modelSeconds.toFixed(1)} s, ratio ${(100 * (modelSeconds / run.secondsToDone)).toFixed(1)}% (${roundLoad})`,
    );
    console.log(`    daemon CPU time during the file: ${run.processCpuSeconds.toFixed(1)} s, of which main thread ${run.mainThreadCpuSeconds.toFixed(1)} s`);
  });
  const daemonSeconds = median(rounds.map((round) => round.daemon.secondsToDone));
  const modelSeconds = median(rounds.map((round) => round.modelSeconds));
  console.log(`  medians: daemon ${daemonSeconds.toFixed(1)} s (${(proteins.length / daemonSeconds).toFixed(1)} proteins/s), model only ${modelSeconds.toFixed(1)} s (${(proteins.length / modelSeconds).toFixed(1)} proteins/s)`);
  const share = modelSeconds / daemonSeconds;
  console.log(`  daemon / model only: ${(100 * share).toFixed(1)}% (target ${100 * TARGETS.daemonShare}%${share >= TARGETS.daemonShare ? ', met' : ', missed'})`);

  console.log(`\n(f) daemon resident memory, the daemon run of (c) with the highest peak:`);
  console.log(`  idle after start: ${mib(daemon.idleRssBytes)}`);
  console.log(`  after the inbox:  ${mib(daemon.rssAfterBytes)}`);
  const met = daemon.peakRssBytes <= TARGETS.peakRssBytes ? 'met' : 'missed';
  console.log(`  peak (VmHWM):     ${mib(daemon.peakRssBytes)} = ${(daemon.peakRssBytes / 1e6).toFixed(0)} MB (target ${TARGETS.peakRssBytes / 1e6} MB, ${met})`);
  console.log(`  of which at most: ${mib(daemon.peakAnonBytes)} anonymous, ${mib(daemon.peakFileBytes)} mapped files (RssAnon, RssFile sampled every 25 ms)`);
  console.log(`  with ${Object.entries(LOW_MEMORY_ENV).map(([name, value]) => `${name}=${value}`).join(' ')}:`);
  console.log(
    `    idle ${mib(lowMemory.idleRssBytes)}, peak ${mib(lowMemory.peakRssBytes)} (anonymous ${mib(lowMemory.peakAnonBytes)}), ` +
      `${lowMemory.secondsToDone.toFixed(1)} s to done/ ` +
      `(${(lowMemory.proteins / lowMemory.secondsToDone).toFixed(1)} proteins/s, ${lowMemory.results} results, ${lowMemoryLoad})`,
  );
  console.log('  breakdown, each line a fresh process (resident after the stage / peak):');
  for (const row of breakdown) {
    const time = row.result.inferenceSeconds === undefined ? '' : `, ${row.result.inferenceSeconds.toFixed(1)} s`;
    console.log(`    ${row.label.padEnd(62)} ${mib(row.result.rssBytes)} / ${mib(row.result.peakRssBytes)}${time}`);
  }
}

/**
 * Prints figures that are all measured in this run. (a) compares the quantized graph with the
 * float32 graph and profiles both, (g) gives the MAC rates of their matrix products and (b)
 * compares PyTorch run eagerly with the quantized graph. Then come the predict() latency with 1
 * and default threads and with spinning on and off, and (d) an exact cache hit. (c) compares the
 * daemon's throughput on 500 real proteins with the model alone, (f) breaks down the daemon's
 * memory, and the last part compares the BitLinear kernel formats.
 */
/** Parts that `node dist/bench/main.js PART...` can pick; without arguments every part runs. */
const PARTS = ['speedup', 'latency', 'variants', 'throughput', 'formats'] as const;
type Part = (typeof PARTS)[number];

function chosenParts(args: string[]): Set<Part> {
  const unknown = args.filter((arg) => !(PARTS as readonly string[]).includes(arg));
  if (unknown.length > 0) throw new Error(`unknown benchmark part ${unknown.join(', ')}: expected any of ${PARTS.join(', ')}`);
  return new Set(args.length > 0 ? (args as Part[]) : PARTS);
}

async function main(): Promise<void> {
  const parts = chosenParts(process.argv.slice(2));
  const modelDir = path.resolve(process.env.BITNET_EDGE_MODEL_DIR ?? bundledModelDir());
  const repoRoot = path.resolve(__dirname, '..', '..');
  printMachine(modelDir);

  if (parts.has('speedup')) await printSpeedups(modelDir, repoRoot);

  if (parts.has('latency')) {
    const protein = syntheticProtein(PROTEIN_RESIDUES, 7);
    const inferenceMs = await printLatencies(modelDir, protein);
    await printCacheLatency(modelDir, protein, inferenceMs);
  }
  if (parts.has('variants')) await printVariantScan(modelDir, repoRoot, load);
  if (parts.has('throughput')) await printThroughputAndMemory(modelDir, repoRoot);
  if (parts.has('formats')) await printModelFormats({ modelDir, repoRoot, rounds: FORMAT_ROUNDS, warmUpRounds: 3 });
  console.log(`\nend: ${load()}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
