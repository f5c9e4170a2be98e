/**
 * Splits the text of a JSON array, fed in pieces, into the texts of its items, so an array of
 * many items is parsed one item at a time. It tracks only strings and bracket depth, so an
 * item text can still be invalid JSON. The caller parses each item, and the array is valid
 * JSON when every item parses and `end()` does not throw.
 */
export class JsonArraySplitter {
  private state: 'before' | 'items' | 'after' = 'before';
  /** Bracket depth inside the array: 0 between items, more inside an item. */
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** Text of the item being read, from earlier pieces. */
  private partial = '';
  private itemCount = 0;

  /** Number of items returned so far. */
  get items(): number {
    return this.itemCount;
  }

  /** Reads the next piece of text and returns the items it completes, in order. Throws InvalidJsonArrayError. */
  push(text: string): string[] {
    const items: string[] = [];
    let itemStart = 0;
    for (let index = 0; index < text.length; index++) {
      const char = text[index];
      if (this.state === 'before') {
        itemStart = index + 1;
        if (char === '[') this.state = 'items';
        else if (!isWhitespace(char) && !(char === '\uFEFF' && index === 0)) throw new InvalidJsonArrayError('the text does not start with "["');
        continue;
      }
      if (this.state === 'after') {
        if (!isWhitespace(char)) throw new InvalidJsonArrayError('text follows the closing "]"');
        continue;
      }

      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (char === '\\') this.escaped = true;
        else if (char === '"') this.inString = false;
        continue;
      }
      if (char === '"') {
        this.inString = true;
      } else if (char === '[' || char === '{') {
        this.depth += 1;
      } else if (this.depth > 0 && (char === ']' || char === '}')) {
        this.depth -= 1;
      } else if (this.depth === 0 && (char === ',' || char === ']')) {
        const item = (this.partial + text.slice(itemStart, index)).trim();
        this.partial = '';
        itemStart = index + 1;
        if (char === ']') this.state = 'after';
        if (item === '' && (char === ',' || this.itemCount > 0)) throw new InvalidJsonArrayError('an array item is empty');
        if (item !== '') {
          items.push(item);
          this.itemCount += 1;
        }
      }
    }
    if (this.state === 'items') this.partial += text.slice(itemStart);
    return items;
  }

  /** Checks that the array was closed. Throws InvalidJsonArrayError. */
  end(): void {
    if (this.state !== 'after') throw new InvalidJsonArrayError('the array is not closed');
  }
}

/** Thrown when the text is not a JSON array of items separated by commas. */
export class InvalidJsonArrayError extends Error {}

function isWhitespace(char: string): boolean {
  return char === ' ' || char === '\n' || char === '\r' || char === '\t';
}
