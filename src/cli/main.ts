#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runDaemon } from './run';
import { runPredict } from './predict';
import { runModelInfo } from './model-info';

const USAGE = `Usage: bitnet-edge <command> [options]

Commands:
  run                      start the daemon (MQTT, inbox, SQLite, telemetry)
  predict FILE|-           predict every record of a FASTA file (or stdin) and print the results
  model info               print the model's manifest summary

Options:
  -c, --config FILE        YAML configuration file (default: none; BITNET_EDGE_CONFIG also works)
  -f, --format json|tsv    output format of predict (default: json)
  -m, --model DIR          model folder for predict and model info (default: the configured model)
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
      return runPredict({ file: rest[0], format: values.format, configFile: values.config, modelDir: values.model });
    case 'model':
      if (rest[0] !== 'info') {
        process.stderr.write(`unknown model command "${rest[0] ?? ''}": use "model info"\n`);
        return EXIT_USAGE;
      }
      return runModelInfo({ configFile: values.config, modelDir: values.model });
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
