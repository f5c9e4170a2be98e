import { Tokenizer } from '../../src/inference/tokenizer';
import { makeManifest } from './fixtures';

const spec = makeManifest().tokenizer;

describe('Tokenizer', () => {
  test('encodes residues after <bos>', () => {
    const encoded = new Tokenizer(spec).encode('ACY');

    expect(encoded.ids).toEqual([1, 4, 5, 23]);
    expect(encoded.firstResidueIndex).toBe(1);
    expect(encoded.residueCount).toBe(3);
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
    expect(encoded.residueCount).toBe(15);
  });

  test('rejects more than maxLength - 1 residues', () => {
    expect(() => new Tokenizer(spec).encode('ACDEFGHIKLMNPQRSTVWY')).toThrow(
      "sequence of 20 residues is longer than the model's 15; encode it in windows",
    );
  });

  test('appends <eos> and counts it when addEos is set', () => {
    const tokenizer = new Tokenizer({ ...spec, addEos: true });
    const encoded = tokenizer.encode('A'.repeat(14));

    expect(tokenizer.maxResidues).toBe(14);
    expect(encoded.ids).toHaveLength(16);
    expect(encoded.ids[15]).toBe(spec.eosId);
    expect(encoded.residueCount).toBe(14);
  });

  test('encodes a window after <bos>', () => {
    const encoded = new Tokenizer(spec).encodeWindow('ACDEFGHIKLMNPQRSTVWY', { start: 5, end: 20, scoredStart: 15 });

    expect(encoded.ids).toHaveLength(16);
    expect(encoded.ids[0]).toBe(spec.bosId);
    expect(encoded.ids[1]).toBe(spec.vocab.indexOf('G'));
    expect(encoded.ids[15]).toBe(spec.vocab.indexOf('Y'));
    expect(encoded.residueCount).toBe(15);
    expect(encoded.firstScoredResidue).toBe(10);
  });

  test('adds <eos> only to the last window', () => {
    const tokenizer = new Tokenizer({ ...spec, addEos: true });
    const residues = 'A'.repeat(20);
    const first = tokenizer.encodeWindow(residues, { start: 0, end: 14, scoredStart: 0 });
    const last = tokenizer.encodeWindow(residues, { start: 6, end: 20, scoredStart: 14 });

    expect(first.ids).toHaveLength(15);
    expect(first.ids).not.toContain(spec.eosId);
    expect(last.ids).toHaveLength(16);
    expect(last.ids[15]).toBe(spec.eosId);
  });

  test('rejects a window outside the sequence', () => {
    const tokenizer = new Tokenizer(spec);

    expect(() => tokenizer.encodeWindow('ACDEF', { start: 2, end: 6, scoredStart: 2 })).toThrow('window [2, 6)');
    expect(() => tokenizer.encodeWindow('A'.repeat(20), { start: 0, end: 16, scoredStart: 0 })).toThrow(
      'windows of at most 15',
    );
    expect(() => tokenizer.encodeWindow('ACDEF', { start: 2, end: 4, scoredStart: 1 })).toThrow('scored from 1');
  });

  test('starts residues at 0 without <bos>', () => {
    const encoded = new Tokenizer({ ...spec, addBos: false }).encode('AC');

    expect(encoded.ids).toEqual([4, 5]);
    expect(encoded.firstResidueIndex).toBe(0);
  });
});
