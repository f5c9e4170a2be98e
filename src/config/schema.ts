import { z } from 'zod';

/**
 * The one schema of the configuration: defaults, types, validation and the environment
 * variables (see env.ts) all come from here. Relative paths resolve against the working
 * directory.
 */
const folders = z
  .object({
    inbox: z.string().min(1).default('inbox').describe('folder watched for sequence files'),
    outbox: z.string().min(1).default('outbox').describe('folder for results files'),
    done: z.string().min(1).default('done').describe('folder for processed source files'),
    failed: z.string().min(1).default('failed').describe('folder for rejected files and error files'),
    data: z.string().min(1).default('data').describe('folder of the SQLite database'),
  })
  .strict()
  .default({});

const tls = z
  .object({
    ca: z.string().optional().describe('path of a PEM file with the CA certificates to trust'),
    cert: z.string().optional().describe('path of a PEM client certificate'),
    key: z.string().optional().describe('path of the PEM private key of the client certificate'),
    rejectUnauthorized: z.boolean().default(true).describe('reject brokers whose certificate does not verify'),
  })
  .strict()
  .default({});

const mqtt = z
  .object({
    broker: z
      .enum(['auto', 'embedded', 'external'])
      .default('auto')
      .describe('auto: use a broker already listening on the local port, else embed one; embedded: always embed; external: connect to url only'),
    url: z.string().min(1).default('mqtt://127.0.0.1:1883').describe('broker URL (mqtt://, mqtts://, ws://, wss://)'),
    embeddedHost: z.string().min(1).default('127.0.0.1').describe('address the embedded broker listens on'),
    embeddedPort: z.number().int().min(0).max(65535).default(1883).describe('port the embedded broker listens on (0 picks a free port)'),
    username: z.string().optional().describe('user name for the broker'),
    password: z.string().optional().describe('password for the broker'),
    clientId: z.string().min(1).optional().describe('MQTT client id; default bitnet-edge-<deviceId>'),
    protocolVersion: z
      .enum(['3.1.1', '5'])
      .default('3.1.1')
      .describe('MQTT version with an external broker; with 5 a reply goes to the request\'s response topic with its correlation data. The embedded broker always uses 3.1.1'),
    baseTopic: z.string().min(1).default('bitnet-edge').describe('first level of every topic'),
    keepaliveSeconds: z.number().int().min(0).max(65535).default(30).describe('MQTT keepalive in seconds'),
    reconnectPeriodMs: z.number().int().min(100).default(2000).describe('wait between reconnect attempts in ms'),
    maxPayloadBytes: z.number().int().positive().default(1_048_576).describe('largest accepted request payload in bytes'),
    outboxMaxMessages: z
      .number()
      .int()
      .positive()
      .default(100_000)
      .describe('maximum messages kept in the outbox while the broker is unreachable; the oldest are dropped and counted beyond it'),
    maxPublishBytes: z
      .number()
      .int()
      .positive()
      .default(15_728_640)
      .describe('largest message payload the daemon publishes, in bytes; the embedded broker accepts packets up to 16 MiB'),
    outboxMaxPerSecond: z.number().positive().default(200).describe('maximum outbox publish rate, in messages per second'),
    redeliveryWindowMs: z
      .number()
      .int()
      .min(0)
      .default(3_600_000)
      .describe('age up to which a request without an id that repeats the packet id and payload of a stored one counts as its redelivery, in ms'),
    tls,
  })
  .strict()
  .default({});

const inbox = z
  .object({
    enabled: z.boolean().default(true).describe('watch the inbox folder'),
    settleMs: z.number().int().min(0).default(1000).describe('time a file size and mtime must stay unchanged before it is read, in ms'),
    rescanMs: z.number().int().min(100).default(30_000).describe('period of the full inbox rescan in ms'),
    maxFileBytes: z.number().int().positive().default(52_428_800).describe('largest accepted inbox file in bytes'),
  })
  .strict()
  .default({});

const queue = z
  .object({
    maxAttempts: z
      .number()
      .int()
      .min(1)
      .default(3)
      .describe('attempts of a job, an inbox file or an MQTT variant request before it fails with QUARANTINED'),
    retryBackoffMs: z
      .number()
      .int()
      .min(0)
      .default(1000)
      .describe('wait before the second attempt of a job whose inference failed, doubled for each further attempt, in ms; 0 retries at once'),
    retryBackoffMaxMs: z.number().int().min(0).default(60_000).describe('maximum wait between two attempts of a job, in ms'),
    batchWaitMs: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe('maximum wait for more jobs when fewer than a full batch are pending, in ms; 0 runs them at once'),
    idleCheckpointMs: z
      .number()
      .int()
      .min(1000)
      .default(60_000)
      .describe('minimum time between WAL checkpoints that run while no job is pending, in ms'),
  })
  .strict()
  .default({});

const model = z
  .object({
    dir: z.string().min(1).optional().describe('model folder with model.onnx and manifest.json; default the bundled model'),
    intraOpThreads: z.number().int().min(0).default(0).describe('onnxruntime intra-op threads; 0 lets onnxruntime choose'),
    // onnxruntime's CPU arena keeps the memory of the largest run, so this limit sets most of the daemon's peak memory.
    maxBatchTokens: z
      .number()
      .int()
      .min(1)
      .default(1024)
      .describe('maximum tokens of one model run, padding included; a longer window runs alone'),
    // A run's attention scores grow with the square of its length, and the arena keeps the largest run.
    chunkTokens: z
      .number()
      .int()
      .min(0)
      .default(128)
      .describe('with a prefix-cache model, a window longer than this many tokens runs alone, in parts of this length; 0 reads each window in one run'),
    padToFixedLengths: z.boolean().default(false).describe('pad every model run to 64, 128, 256 or 512 tokens'),
    allowSpinning: z
      .boolean()
      .default(false)
      .describe('let idle onnxruntime threads spin-wait for work: shorter runs on an idle CPU, a busy core between runs'),
  })
  .strict()
  .default({});

const sequence = z
  .object({
    minLength: z.number().int().min(1).default(10).describe('shortest accepted protein, in residues'),
    // Table 11 translates every codon as table 1 does and adds the bacterial start codons, so it
    // suits the bacterial and archaeal DNA of field samples. With eukaryotic DNA it can start an
    // ORF at GTG or ATT upstream of the real ATG, so such input should set 1.
    geneticCode: z
      .number()
      .int()
      .refine((id) => [1, 4, 11].includes(id), 'supported genetic codes are 1, 4 and 11')
      .default(11)
      .describe('NCBI genetic code (translation table) for DNA and RNA input: 1, 4 or 11'),
    // 100 codons is a choice. EMBOSS getorf 6.6.0 defaults to 30 nucleotides (-minsize) and
    // fastaq to_orfs_gff to 300, and short ORFs of random sequence would flood the model.
    minOrfCodons: z.number().int().min(1).default(100).describe('shortest ORF translated from DNA or RNA input, in codons without the stop codon'),
    orfOpenEnds: z.boolean().default(false).describe('also translate an ORF that reaches the sequence end without a stop codon'),
  })
  .strict()
  .default({});

const telemetry = z
  .object({
    intervalMs: z.number().int().min(1000).default(10_000).describe('telemetry period in ms'),
    retentionHours: z.number().positive().default(168).describe('age after which stored telemetry rows are pruned, in hours'),
    idleWatts: z.number().nonnegative().default(2.7).describe('power at idle for the load-based estimate, in watts'),
    maxWatts: z.number().nonnegative().default(6.4).describe('power at full CPU load for the load-based estimate, in watts'),
  })
  .strict()
  .default({});

const cache = z
  .object({
    maxBytes: z
      .number()
      .int()
      .min(0)
      .default(16_777_216)
      .describe('estimated size limit of the in-memory result cache in front of SQLite, in bytes; 0 disables it'),
    prefixMaxBytes: z
      .number()
      .int()
      .min(0)
      .default(33_554_432)
      .describe('estimated size limit of the prefix (key/value) cache of variant scoring, in bytes; 0 disables it'),
    prefixBlockResidues: z
      .number()
      .int()
      .min(1)
      .max(512)
      .default(16)
      .describe('residues per prefix-cache block; a variant reuses the cached past up to the last block boundary before its first change'),
  })
  .strict()
  .default({});

const http = z
  .object({
    enabled: z.boolean().default(false).describe('serve the JSON API (POST /v1/variants, GET /healthz)'),
    host: z.string().min(1).default('127.0.0.1').describe('address the HTTP server listens on; 127.0.0.1 keeps it on this machine'),
    port: z.number().int().min(0).max(65535).default(8080).describe('TCP port of the HTTP server (0 picks a free port)'),
    maxBodyBytes: z.number().int().positive().default(1_048_576).describe('largest accepted HTTP request body in bytes'),
  })
  .strict()
  .default({});

const variants = z
  .object({
    maxVariants: z
      .number()
      .int()
      .positive()
      .default(20_000)
      .describe('most variants scored for one request, "all" included (19 per residue)'),
    retentionHours: z
      .number()
      .positive()
      .default(168)
      .describe('age after which answered MQTT variant requests and their stored replies are deleted, in hours'),
  })
  .strict()
  .default({});

export const configSchema = z
  .object({
    deviceId: z
      .string()
      .regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, dot, dash and underscore only')
      .optional()
      .describe('device id in topics; default the host name'),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('pino log level'),
    folders,
    mqtt,
    inbox,
    queue,
    model,
    sequence,
    telemetry,
    cache,
    http,
    variants,
    shutdownDeadlineMs: z.number().int().min(100).default(10_000).describe('hard limit for a graceful stop in ms'),
  })
  .strict();

/** Validated configuration with every default filled in. */
export type Config = z.infer<typeof configSchema>;
