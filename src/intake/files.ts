import { randomBytes } from 'node:crypto';
import { promises as fs, constants as fsConstants } from 'node:fs';
import path from 'node:path';

/**
 * File name endings the inbox reads, each also with `.gz` appended. The content, not the
 * ending, decides the format and whether the file is gzip-compressed.
 */
export const ACCEPTED_EXTENSIONS = ['.fasta', '.fa', '.faa', '.fna', '.ffn', '.fas', '.fastq', '.fq', '.txt', '.json'] as const;

function hasSequenceExtension(lowerName: string): boolean {
  return (ACCEPTED_EXTENSIONS as readonly string[]).includes(path.extname(lowerName));
}

/** True for a gzip-compressed sequence file name such as `reads.fasta.gz`. */
export function isGzipName(name: string): boolean {
  const lower = name.toLowerCase();
  return lower.endsWith('.gz') && hasSequenceExtension(lower.slice(0, -3));
}

/** True when `name` is a plain base name that cannot point outside its folder. */
export function isBaseName(name: string): boolean {
  return name.length > 0 && name !== '.' && name !== '..' && path.basename(name) === name && !name.includes('\\');
}

/**
 * True for names the inbox claims: accepted extensions and their `.gz` forms. Hidden names,
 * `*.tmp`, `*.part`, `*.swp` and names ending in `~` are files still being written by
 * another program and are skipped.
 */
export function isInboxCandidate(name: string): boolean {
  if (!isBaseName(name)) return false;
  const lower = name.toLowerCase();
  if (lower.startsWith('.') || lower.endsWith('~')) return false;
  if (lower.endsWith('.tmp') || lower.endsWith('.part') || lower.endsWith('.swp')) return false;
  return hasSequenceExtension(lower) || isGzipName(lower);
}

/** Returns `name` with `-<n>` inserted before its last extension, or `name` itself for n = 0. */
export function suffixedName(name: string, n: number): string {
  if (n === 0) return name;
  const extension = path.extname(name);
  const stem = extension.length > 0 ? name.slice(0, -extension.length) : name;
  return `${stem}-${n}${extension}`;
}

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

/** Flushes a folder's entries to disk so a rename or new file survives a power cut. */
export async function fsyncFolder(folder: string): Promise<void> {
  const handle = await fs.open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Error codes of `link` on file systems without hard links (FAT, some network and FUSE mounts). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

async function pathExists(file: string): Promise<boolean> {
  try {
    await fs.lstat(file);
    return true;
  } catch {
    return false;
  }
}

/** Copies `source` to a new file `target` and flushes it. Fails with EEXIST when `target` exists. */
async function copyExclusive(source: string, target: string): Promise<void> {
  await fs.copyFile(source, target, fsConstants.COPYFILE_EXCL);
  const handle = await fs.open(target, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Places `source` at `target` without replacing an existing file. Returns false when `target`
 * exists. A hard link fails on an existing target, so the check and the move are one step.
 * Where hard links are not supported, an existence check followed by rename is used, which
 * is safe while this process is the only one writing to the folder. Across file systems the
 * file is copied with COPYFILE_EXCL.
 */
async function placeWithoutOverwrite(source: string, target: string): Promise<boolean> {
  try {
    await fs.link(source, target);
    await fs.unlink(source);
    return true;
  } catch (err) {
    const code = errorCode(err);
    if (code === 'EEXIST') return false;
    if (code === 'EXDEV') {
      try {
        await copyExclusive(source, target);
      } catch (copyErr) {
        if (errorCode(copyErr) === 'EEXIST') return false;
        throw copyErr;
      }
      await fs.unlink(source);
      return true;
    }
    if (code === undefined || !NO_HARD_LINKS.has(code)) throw err;
  }

  if (await pathExists(target)) return false;
  await fs.rename(source, target);
  return true;
}

/**
 * Moves `source` into `folder` under `name`, or under `name` with a numeric suffix when that
 * name is taken, so nothing is ever overwritten. Fsyncs the folder and returns the final path.
 */
export async function moveWithoutOverwrite(source: string, folder: string, name: string): Promise<string> {
  for (let n = 0; ; n += 1) {
    const target = path.join(folder, suffixedName(name, n));
    if (!(await placeWithoutOverwrite(source, target))) continue;
    await fsyncFolder(folder);
    return target;
  }
}

/** Characters gathered before one write of a file given in pieces. */
const WRITE_CHUNK_CHARS = 256 * 1024;

/**
 * Writes `content` to `folder/name` atomically: a hidden temp file in the same folder is
 * written and fsynced, then moved into place without overwriting (a numeric suffix is added
 * when the name is taken), then the folder is fsynced. Returns the final path. `content` can be
 * a sequence of pieces, which are written as they come (FileHandle.writeFile writes from the
 * current position, so consecutive calls append).
 */
export async function writeFileAtomic(folder: string, name: string, content: string | Iterable<string>): Promise<string> {
  const temp = path.join(folder, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await fs.open(temp, 'wx');
  try {
    if (typeof content === 'string') {
      await handle.writeFile(content, 'utf8');
    } else {
      // Pieces are gathered into writes of about WRITE_CHUNK_CHARS, so a large file never sits in memory whole.
      let pending: string[] = [];
      let pendingChars = 0;
      for (const piece of content) {
        pending.push(piece);
        pendingChars += piece.length;
        if (pendingChars >= WRITE_CHUNK_CHARS) {
          await handle.writeFile(pending.join(''), 'utf8');
          pending = [];
          pendingChars = 0;
        }
      }
      if (pending.length > 0) await handle.writeFile(pending.join(''), 'utf8');
    }
    await handle.sync();
  } finally {
    await handle.close();
  }

  try {
    return await moveWithoutOverwrite(temp, folder, name);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
}
