import type { TokenizerSpec } from './manifest';

/** Token ids of one sequence, as fed to the model. */
export interface EncodedSequence {
  /** `<bos>` (when the manifest adds it), the residue tokens, then `<eos>` (when it adds it). */
  ids: number[];
  /** Position in `ids` of the first residue token. */
  firstResidueIndex: number;
  /** Number of residues encoded, smaller than the input length when the sequence was truncated. */
  residuesUsed: number;
  truncated: boolean;
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

  /** Encodes upper-case residues. Residues beyond `maxResidues` are cut, and `truncated` is set. */
  encode(residues: string): EncodedSequence {
    const residuesUsed = Math.min(residues.length, this.maxResidues);
    const ids: number[] = [];

    if (this.spec.addBos) ids.push(this.spec.bosId);
    const firstResidueIndex = ids.length;
    for (let i = 0; i < residuesUsed; i++) {
      ids.push(this.idByToken.get(residues[i].toUpperCase()) ?? this.unknownId);
    }
    if (this.spec.addEos) ids.push(this.spec.eosId);

    return { ids, firstResidueIndex, residuesUsed, truncated: residuesUsed < residues.length };
  }
}
