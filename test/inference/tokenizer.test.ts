import { Tokenizer } from '../../src/inference/tokenizer';
import { makeManifest } from './fixtures';

const spec = makeManifest().tokenizer;

describe('Tokenizer', () => {
  test('encodes residues after <bos>', () => {
    const encoded = new Tokenizer(spec).encode('ACY');

    expect(encoded.ids).toEqual([1, 4, 5, 23]);
    expect(encoded.firstResidueIndex).toBe(1);
    expect(encoded.residuesUsed).toBe(3);
    expect(encoded.truncated).toBe(false);
  });

  test('maps X to its own token', () => {
    expect(new Tokenizer(spec).encode('X').ids).toEqual([1, 24]);
  });

  test('maps letters outside the vocabulary to <unk>', () => {
    expect(new Tokenizer(spec).encode('AUB').ids).toEqual([1, 4, 3, 3]);
  });

  test('maps letters outside the vocabulary to unknownResidue', () => {
    expect(new Tokenizer({ ...spec, unknownResidue: 'X' }).encode('AUB').ids).toEqual([1, 4, 24, 24]);
  });

  test('matches lower-case residues', () => {
    expect(new Tokenizer(spec).encode('acy').ids).toEqual([1, 4, 5, 23]);
  });

  test('keeps a sequence of maxLength - 1 residues whole', () => {
    const tokenizer = new Tokenizer(spec);
    const encoded = tokenizer.encode('A'.repeat(15));

    expect(tokenizer.maxResidues).toBe(15);
    expect(encoded.ids).toHaveLength(16);
    expect(encoded.truncated).toBe(false);
  });

  test('truncates beyond maxLength - 1 residues', () => {
    const encoded = new Tokenizer(spec).encode('ACDEFGHIKLMNPQRSTVWY');

    expect(encoded.ids).toHaveLength(16);
    expect(encoded.residuesUsed).toBe(15);
    expect(encoded.truncated).toBe(true);
    expect(encoded.ids[15]).toBe(spec.vocab.indexOf('R'));
  });

  test('appends <eos> and counts it when addEos is set', () => {
    const tokenizer = new Tokenizer({ ...spec, addEos: true });
    const encoded = tokenizer.encode('A'.repeat(20));

    expect(tokenizer.maxResidues).toBe(14);
    expect(encoded.ids).toHaveLength(16);
    expect(encoded.ids[15]).toBe(spec.eosId);
    expect(encoded.residuesUsed).toBe(14);
    expect(encoded.truncated).toBe(true);
  });

  test('starts residues at 0 without <bos>', () => {
    const encoded = new Tokenizer({ ...spec, addBos: false }).encode('AC');

    expect(encoded.ids).toEqual([4, 5]);
    expect(encoded.firstResidueIndex).toBe(0);
  });
});
