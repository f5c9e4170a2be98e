#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runDaemon } from './run';
import { runPredict } from './predict';
import { runModelInfo } from './model-info';
import { DEFAULT_VERIFY_TOLERANCE, runModelVerify } from './model-verify';
import { runVariants } from './variants';

const USAGE = `Usage: bitnet-edge <command> [options]

Commands:
  run                      start the daemon (MQTT, inbox, SQLite, telemetry)
  predict FILE|-           predict every record of a FASTA file (or stdin) and print the results
  model info               print the model's manifest summary
  model verify             compare the model's onnxruntime outputs with the PyTorch reference outputs
  variants                 score substitutions of one protein: log-likelihood ratios against the wild type

Options:
  -c, --config FILE        YAML configuration file (default: none; BITNET_EDGE_CONFIG also works)
  -f, --format json|tsv    output format of predict (default: json)
  -m, --model DIR          model folder for predict and the model commands (default: the configured model)
      --residues           predict: add per-residue probabilities to each prediction
      --reference FILE     model verify: reference outputs (default: reference.json in the model folder)
      --tolerance NUMBER   model verify: largest accepted absolute difference (default: ${DEFAULT_VERIFY_TOLERANCE})
      --sequence SEQ       variants: the protein, as amino-acid letters
      --fasta FILE         variants: a FASTA file (or - for stdin) with the one protein
      --variant A123G      variants: a substitution, 1-based; join several with ":" (A123G:K130R); repeatable
      --all                variants: every single substitution (19 per residue)
      --no-prefix-cache    variants: run every variant from the start instead of after cached keys and values
      --json               variants: print the whole reply as JSON, with each variant's predictions
      --no-predictions     variants: with --json, leave out each variant's predictions (LLRs only, faster)
  -h, --help               show this help
  -v, --version            print the version

Every setting can also be set by an environment variable, e.g. BITNET_EDGE_MQTT_URL.`;

/** Exit status for invalid command-line usage. */
export const EXIT_USAGE = 2;

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        format: { type: 'string', short: 'f', default: 'json' },
        model: { type: 'string', short: 'm' },
        residues: { type: 'boolean' },
        reference: { type: 'string' },
        tolerance: { type: 'string' },
        sequence: { type: 'string' },
        fasta: { type: 'string' },
        variant: { type: 'string', multiple: true },
        all: { type: 'boolean' },
        'no-prefix-cache': { type: 'boolean' },
        'no-predictions': { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}\n`);
    return EXIT_USAGE;
  }

  const { values, positionals } = parsed;
  if (values.version) {
    // The package file sits two levels above the compiled dist/cli/main.js.
    const pkg = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return 0;
  }
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined && !values.help ? EXIT_USAGE : 0;
  }

  switch (command) {
    case 'run': {
      const code = await runDaemon({ configFile: values.config });
      // A library timer or socket left open must not keep a stopped daemon alive.
      return process.exit(code);
    }
    case 'predict':
      if (rest.length !== 1) {
        process.stderr.write(`predict takes one FASTA file, or - for stdin\n\n${USAGE}\n`);
        return EXIT_USAGE;
      }
      if (values.format !== 'json' && values.format !== 'tsv') {
        process.stderr.write(`invalid --format "${values.format}": use json or tsv\n`);
        return EXIT_USAGE;
      }
      return runPredict({
        file: rest[0],
        format: values.format,
        configFile: values.config,
        modelDir: values.model,
        options: values.residues ? { residues: true } : {},
      });
    case 'variants': {
      const variants = values.variant ?? [];
      if ((values.sequence === undefined) === (values.fasta === undefined) || (variants.length > 0) === (values.all === true) || rest.length > 0) {
        process.stderr.write(`variants takes --sequence SEQ or --fasta FILE, and --variant A123G (repeatable) or --all\n\n${USAGE}\n`);
        return EXIT_USAGE;
      }
      return runVariants({
        sequence: values.sequence,
        fastaFile: values.fasta,
        variants,
        all: values.all === true,
        prefixCache: values['no-prefix-cache'] !== true,
        json: values.json === true,
        predictions: values['no-predictions'] !== true,
        configFile: values.config,
        modelDir: values.model,
      });
    }
    case 'model':
      if (rest[0] === 'info') return runModelInfo({ configFile: values.config, modelDir: values.model });
      if (rest[0] === 'verify') {
        const tolerance = values.tolerance === undefined ? DEFAULT_VERIFY_TOLERANCE : Number(values.tolerance);
        if (!Number.isFinite(tolerance) || tolerance < 0) {
          process.stderr.write(`invalid --tolerance "${values.tolerance}": use a number of 0 or more, such as 0.05\n`);
          return EXIT_USAGE;
        }
        return runModelVerify({ configFile: values.config, modelDir: values.model, referenceFile: values.reference, tolerance });
      }
      process.stderr.write(`unknown model command "${rest[0] ?? ''}": use "model info" or "model verify"\n`);
      return EXIT_USAGE;
    default:
      process.stderr.write(`unknown command "${command}"\n\n${USAGE}\n`);
      return EXIT_USAGE;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bitnet-edge: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
