import type { TokenizerSpec } from './manifest';
import type { SequenceWindow } from './windows';

/** Token ids of one sequence or window, as fed to the model. */
export interface EncodedSequence {
  /** `<bos>` (when the manifest adds it), the residue tokens, then `<eos>` (when it adds it). */
  ids: number[];
  /** Position in `ids` of the first residue token. */
  firstResidueIndex: number;
  /** Number of residue tokens in `ids`. */
  residueCount: number;
}

/** A window of a sequence, encoded. */
export interface EncodedWindow extends EncodedSequence {
  /** Offset among the window's residues of the first one its language model scores count. */
  firstScoredResidue: number;
}

/**
 * Maps residues to token ids per the manifest's vocabulary. Each residue letter is one token,
 * matched after upper-casing. A letter missing from the vocabulary becomes the manifest's
 * `unknownResidue` token (X in the bundled model, as in training), or `<unk>` when none is named.
 */
export class Tokenizer {
  private readonly idByToken: Map<string, number>;
  private readonly unknownId: number;

  constructor(private readonly spec: TokenizerSpec) {
    this.idByToken = new Map(spec.vocab.map((token, id) => [token, id]));
    const named = spec.unknownResidue === undefined ? undefined : this.idByToken.get(spec.unknownResidue);
    this.unknownId = named ?? spec.unkId;
  }

  /** Residues that fit in `maxLength` tokens once `<bos>` and `<eos>` are counted. */
  get maxResidues(): number {
    const specialTokens = (this.spec.addBos ? 1 : 0) + (this.spec.addEos ? 1 : 0);
    return this.spec.maxLength - specialTokens;
  }

  /** Encodes a whole sequence of up to `maxResidues` residues. Throws a RangeError for a longer one. */
  encode(residues: string): EncodedSequence {
    if (residues.length > this.maxResidues) {
      throw new RangeError(
        `sequence of ${residues.length} residues is longer than the model's ${this.maxResidues}; encode it in windows`,
      );
    }
    return this.encodeRange(residues, 0, residues.length);
  }

  /**
   * Encodes one window of `residues`. Every window starts with `<bos>` when the manifest adds it,
   * as the bundled model's training crops do (`<bos>` followed by a random stretch of residues).
   * Only the window that reaches the sequence end gets `<eos>`, because the protein ends nowhere else. Throws a RangeError for a window outside the sequence or longer than `maxResidues`.
   */
  encodeWindow(residues: string, window: SequenceWindow): EncodedWindow {
    const { start, end, scoredStart } = window;
    const valid = start >= 0 && start < end && end <= residues.length && scoredStart >= start && scoredStart <= end;
    if (!valid || end - start > this.maxResidues) {
      throw new RangeError(
        `window [${start}, ${end}) scored from ${scoredStart} does not fit a sequence of ${residues.length} residues ` +
          `and windows of at most ${this.maxResidues}`,
      );
    }
    return { ...this.encodeRange(residues, start, end), firstScoredResidue: scoredStart - start };
  }

  private encodeRange(residues: string, start: number, end: number): EncodedSequence {
    const ids: number[] = [];

    if (this.spec.addBos) ids.push(this.spec.bosId);
    const firstResidueIndex = ids.length;
    for (let i = start; i < end; i++) {
      ids.push(this.idByToken.get(residues[i].toUpperCase()) ?? this.unknownId);
    }
    if (this.spec.addEos && end === residues.length) ids.push(this.spec.eosId);

    return { ids, firstResidueIndex, residueCount: end - start };
  }
}
