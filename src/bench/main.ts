import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { bundledModelDir } from '../config/load';
import { measureCacheLatency, predictOnce } from './cache-latency';
import { measureDaemonMemory } from './daemon-memory';
import { printModelFormats } from './model-formats';
import { measureModelLatency, syntheticProtein } from './model-latency';

const RUNS = 30;
const CACHE_LOOKUPS = 10_000;
const PROTEIN_RESIDUES = 400;
const FORMAT_ROUNDS = 20;

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

/**
 * Prints the model latency for one 400-residue protein with one thread against
 * onnxruntime's default thread count, and the daemon's resident memory before and after an
 * inbox of 200 proteins, all measured in this run. It also prints the latency of an exact
 * in-memory cache hit next to the model latency, and the latency and output differences of the
 * model's BitLinear kernels rewritten as float32, int8 and MatMulNBits graphs.
 */
async function main(): Promise<void> {
  const modelDir = process.env.BITNET_EDGE_MODEL_DIR ?? bundledModelDir();
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(`machine: ${os.cpus().length} x ${cpu}, ${os.arch()}, ${mib(os.totalmem())} RAM, Node ${process.version}`);
  console.log(`model: ${modelDir}`);

  const protein = syntheticProtein(PROTEIN_RESIDUES, 7);
  const single = await measureModelLatency(modelDir, protein, 1, RUNS);
  const automatic = await measureModelLatency(modelDir, protein, 0, RUNS);
  console.log(`\nlatency of one ${PROTEIN_RESIDUES}-residue protein, predict() through the worker, ${RUNS} runs:`);
  console.log(`  1 thread:        median ${single.medianMs.toFixed(2)} ms, p90 ${single.p90Ms.toFixed(2)} ms`);
  console.log(`  default threads: median ${automatic.medianMs.toFixed(2)} ms, p90 ${automatic.p90Ms.toFixed(2)} ms`);
  console.log(`  ratio 1 thread / default: ${(single.medianMs / automatic.medianMs).toFixed(2)}x`);

  const cache = measureCacheLatency(await predictOnce(modelDir, protein), CACHE_LOOKUPS);
  console.log(`\nexact in-memory cache hit, ${cache.lookups} lookups, prediction JSON of ${cache.predictionJsonLength} characters:`);
  console.log(`  ResultCache.get:            median ${cache.getMedianUs.toFixed(3)} us`);
  console.log(`  key + get (processor path): median ${cache.processorHitMedianUs.toFixed(3)} us`);
  console.log(`  JSON.parse of the entry:    median ${cache.jsonParseMedianUs.toFixed(3)} us`);
  const inferenceUs = automatic.medianMs * 1000;
  console.log(`  ratio inference (default threads) / processor hit: ${(inferenceUs / cache.processorHitMedianUs).toFixed(0)}x`);

  const mainScript = path.resolve(__dirname, '..', 'cli', 'main.js');
  const memory = await measureDaemonMemory(mainScript, await freePort(), 200, PROTEIN_RESIDUES);
  console.log(`\ndaemon resident memory (embedded broker, inbox of ${memory.proteins} proteins of ${memory.residuesEach} residues):`);
  console.log(`  idle after start: ${mib(memory.idleRssBytes)}`);
  console.log(`  after the inbox:  ${mib(memory.rssAfterBytes)} (peak ${mib(memory.peakRssBytes)})`);
  console.log(`  inbox file to done/: ${memory.secondsToDone.toFixed(1)} s, ${(memory.proteins / memory.secondsToDone).toFixed(1)} proteins/s`);

  const repoRoot = path.resolve(__dirname, '..', '..');
  await printModelFormats({ modelDir, repoRoot, rounds: FORMAT_ROUNDS, warmUpRounds: 3 });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
