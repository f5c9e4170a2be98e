/** Line breaks of every platform: CRLF (Windows), LF (Unix) and a lone CR (classic Mac OS). */
const LINE_BREAK = /\r\n|\r|\n/;

/** Splits text into lines at CRLF, LF or CR, without a byte-order mark at its start. */
export function splitLines(text: string): string[] {
  const withoutBom = text.startsWith('\uFEFF') ? text.slice(1) : text;
  return withoutBom.split(LINE_BREAK);
}

/**
 * Splits text that arrives in chunks into the same lines as `splitLines` returns for the whole
 * text, whatever the chunk boundaries. A CR at the end of a chunk is held back, because the
 * next chunk may start with the LF of a CRLF.
 */
export class LineSplitter {
  private carry = '';
  private started = false;

  /** Adds a chunk and returns the lines it completed. */
  push(chunk: string): string[] {
    let text = this.carry + chunk;
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.startsWith('\uFEFF')) text = text.slice(1);
    }

    const heldCr = text.endsWith('\r');
    const lines = (heldCr ? text.slice(0, -1) : text).split(LINE_BREAK);
    this.carry = (lines.pop() ?? '') + (heldCr ? '\r' : '');
    return lines;
  }

  /** Returns the remaining lines. The last one is empty when the text ended with a line break. */
  end(): string[] {
    const rest = this.carry;
    this.carry = '';
    return rest.split(LINE_BREAK);
  }
}
