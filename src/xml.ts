// A small lossless XML reader: a tree of elements that remembers where every
// node sits in the source text, so callers can change a few elements by
// splicing new text into the original and leave every other byte alone
// (comments, CDATA, whitespace, quote style, entity spelling, hex values).
//
// It checks well-formedness (matching tags, quoted attributes, known entities,
// no duplicate attributes, only characters XML allows) but does not resolve
// DTDs: a DOCTYPE is refused, which libvirt never writes, so no entity other
// than the five predefined ones and character references is ever expanded.
//
// It reads what the hook gets on stdin, so its cost is bounded by the input:
// linear time, and nesting limited to what libvirt itself can parse.
//
// Why not a library (saxes, the strict SAX parser, was tried): saxes checks
// well-formedness but reports only a position that trails its state machine
// (text is reported after the next "<", a start tag after its first space or
// its ">", no offsets at all for attributes), so every node's start and end
// and every attribute's span would have to be found again in the source, which
// is most of parseXml below. Its bundle also loads measurably slower in the
// hook, which runs on every VM start and stop (BENCHMARKS.md, "Libraries
// weighed for the hook"). So the tokenizer stays here.

export interface XmlAttribute {
  name: string;
  /** Decoded value (entities and character references resolved). */
  value: string;
  /** Offsets of the whole `name="value"` text. */
  start: number;
  end: number;
  quote: '"' | "'";
}

export interface XmlElement {
  kind: 'element';
  name: string;
  attributes: XmlAttribute[];
  children: XmlNode[];
  parent: XmlElement | undefined;
  /** Offset of `<`. */
  start: number;
  /** Offset just after the start tag's `>`. */
  startTagEnd: number;
  /** Offset of the end tag's `<` (equals startTagEnd when self-closing). */
  contentEnd: number;
  /** Offset just after the element. */
  end: number;
  selfClosing: boolean;
}

export interface XmlLeaf {
  kind: 'text' | 'comment' | 'cdata' | 'pi';
  start: number;
  end: number;
  parent: XmlElement | undefined;
}

export type XmlNode = XmlElement | XmlLeaf;

export interface XmlDocument {
  source: string;
  root: XmlElement;
  /** Top-level nodes (XML declaration, comments, PIs, whitespace, the root). */
  nodes: XmlNode[];
}

export class XmlSyntaxError extends Error {
  constructor(
    readonly reason: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(`line ${line} column ${column}: ${reason}`);
    this.name = 'XmlSyntaxError';
  }
}

const NAME = /[A-Za-z_:\u00C0-\uFFFF][-A-Za-z0-9_:.\u00B7\u00C0-\uFFFF]*/y;
const SPACE = /[ \t\r\n]+/y;
const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
/**
 * Deepest element nesting accepted. libvirt parses domain XML with libxml2
 * without XML_PARSE_HUGE, whose limit is 256 (xmlParserMaxDepth): no domain
 * libvirt accepted is deeper, and a bound keeps recursive readers safe.
 */
const MAX_DEPTH = 256;
/** XML 1.0 Char (section 2.2): anything else (NUL, most C0 controls, U+FFFE/U+FFFF, lone surrogates) cannot occur in a document. */
const NOT_XML_CHAR = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;
const isXmlChar = (code: number): boolean =>
  code === 0x9 || code === 0xa || code === 0xd || (code >= 0x20 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd) || (code >= 0x10000 && code <= 0x10ffff);
// Shared by every element without attributes / every self-closing element: an
// input of many tiny elements costs one object each, not three.
const NO_ATTRIBUTES: XmlAttribute[] = Object.freeze([]) as unknown as XmlAttribute[];
const NO_CHILDREN: XmlNode[] = Object.freeze([]) as unknown as XmlNode[];
const hex4 = (code: number): string => `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;

/** Resolve entity and character references; throws on an unknown or malformed one. */
export function decodeEntities(text: string, onError: (offset: number, reason: string) => never = defaultError): string {
  if (!text.includes('&')) return text;
  return text.replace(/&([^;&\s]*);?/g, (whole, ref: string, offset: number) => {
    if (!whole.endsWith(';')) return onError(offset, `"&" must start an entity reference such as &amp;`);
    if (ref.startsWith('#')) {
      const code = /^#x[0-9a-fA-F]+$/.test(ref)
        ? parseInt(ref.slice(2), 16)
        : /^#[0-9]+$/.test(ref)
          ? parseInt(ref.slice(1), 10)
          : NaN;
      if (!Number.isFinite(code) || code > 0x10ffff) return onError(offset, `bad character reference ${whole}`);
      if (!isXmlChar(code)) return onError(offset, `character reference ${whole} is ${hex4(code)}, which XML does not allow`);
      return String.fromCodePoint(code);
    }
    const value = PREDEFINED[ref];
    if (value === undefined) return onError(offset, `unknown entity ${whole} (only &lt; &gt; &amp; &quot; &apos; are defined)`);
    return value;
  });
}

function defaultError(offset: number, reason: string): never {
  throw new XmlSyntaxError(reason, 0, offset);
}

/** Escape text for an attribute value written between `quote`s. */
export function escapeAttribute(value: string, quote: '"' | "'" = "'"): string {
  const escaped = value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return quote === '"' ? escaped.replace(/"/g, '&quot;') : escaped.replace(/'/g, '&apos;');
}

/** Escape character data. */
export function escapeText(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function parseXml(source: string): XmlDocument {
  const src = source;
  let pos = 0;

  const lineCol = (offset: number): [number, number] => {
    let line = 1;
    let lastNewline = -1;
    for (let i = 0; i < offset && i < src.length; i++) {
      if (src.charCodeAt(i) === 10) {
        line++;
        lastNewline = i;
      }
    }
    return [line, offset - lastNewline];
  };
  function fail(reason: string, at = pos): never {
    const [line, column] = lineCol(at);
    throw new XmlSyntaxError(reason, line, column);
  }
  const matchAt = (re: RegExp): string | undefined => {
    re.lastIndex = pos;
    const m = re.exec(src);
    if (!m) return undefined;
    pos += m[0].length;
    return m[0];
  };
  const expect = (text: string, what: string): void => {
    if (!src.startsWith(text, pos)) fail(`expected ${what}`);
    pos += text.length;
  };
  const checkText = (start: number, end: number): void => {
    const text = src.slice(start, end);
    const bad = text.indexOf(']]>');
    if (bad >= 0) fail('"]]>" is not allowed in text', start + bad);
    decodeEntities(text, (offset, reason) => fail(reason, start + offset));
  };

  const readComment = (parent: XmlElement | undefined): XmlLeaf => {
    const start = pos;
    const close = src.indexOf('-->', pos + 4);
    if (close < 0) fail('unterminated comment');
    const body = src.slice(pos + 4, close);
    if (body.includes('--') || body.endsWith('-')) fail('"--" is not allowed inside a comment', start);
    pos = close + 3;
    return { kind: 'comment', start, end: pos, parent };
  };
  const readPi = (parent: XmlElement | undefined): XmlLeaf => {
    const start = pos;
    const close = src.indexOf('?>', pos + 2);
    if (close < 0) fail('unterminated processing instruction');
    pos = close + 2;
    return { kind: 'pi', start, end: pos, parent };
  };

  const readStartTag = (parent: XmlElement | undefined): XmlElement => {
    const start = pos;
    pos++; // '<'
    const name = matchAt(NAME) ?? fail('expected an element name');
    const attributes: XmlAttribute[] = [];
    // A set, not a scan of `attributes`: an element with very many attributes stays linear.
    const seen = new Set<string>();
    for (;;) {
      const hadSpace = matchAt(SPACE) !== undefined;
      if (src.startsWith('/>', pos) || src[pos] === '>') break;
      if (pos >= src.length) fail(`unterminated start tag <${name}>`, start);
      if (!hadSpace) fail(`expected a space before the next attribute in <${name}>`);
      const attrStart = pos;
      const attrName = matchAt(NAME) ?? fail(`expected an attribute name in <${name}>`);
      matchAt(SPACE);
      expect('=', `"=" after attribute ${attrName}`);
      matchAt(SPACE);
      const quote = src[pos];
      if (quote !== '"' && quote !== "'") fail(`the value of attribute ${attrName} must be quoted`);
      const close = src.indexOf(quote, pos + 1);
      if (close < 0) fail(`unterminated value of attribute ${attrName}`);
      const raw = src.slice(pos + 1, close);
      const lt = raw.indexOf('<');
      if (lt >= 0) fail(`"<" is not allowed in the value of attribute ${attrName}`, pos + 1 + lt);
      const valueStart = pos + 1;
      const value = decodeEntities(raw, (offset, reason) => fail(reason, valueStart + offset))
        // Attribute-value normalisation: literal whitespace characters become spaces.
        .replace(/[\t\n\r]/g, ' ');
      pos = close + 1;
      if (seen.has(attrName)) fail(`attribute ${attrName} appears twice in <${name}>`, attrStart);
      seen.add(attrName);
      attributes.push({ name: attrName, value, start: attrStart, end: pos, quote });
    }
    const selfClosing = src[pos] === '/';
    pos += selfClosing ? 2 : 1;
    return {
      kind: 'element',
      name,
      attributes: attributes.length > 0 ? attributes : NO_ATTRIBUTES,
      children: selfClosing ? NO_CHILDREN : [],
      parent,
      start,
      startTagEnd: pos,
      contentEnd: pos,
      end: pos,
      selfClosing,
    };
  };

  const badChar = src.search(NOT_XML_CHAR);
  if (badChar >= 0) fail(`character ${hex4(src.codePointAt(badChar) ?? 0)} is not allowed in XML`, badChar);

  const nodes: XmlNode[] = [];
  let root: XmlElement | undefined;
  const stack: XmlElement[] = [];

  // An optional BOM is kept as part of the first text node.
  while (pos < src.length) {
    const parent = stack[stack.length - 1];
    const siblings = parent ? parent.children : nodes;
    const c = src[pos];
    if (c === '<') {
      if (src.startsWith('<!--', pos)) {
        siblings.push(readComment(parent));
      } else if (src.startsWith('<![CDATA[', pos)) {
        if (!parent) fail('CDATA is only allowed inside an element');
        const start = pos;
        const close = src.indexOf(']]>', pos + 9);
        if (close < 0) fail('unterminated CDATA section');
        pos = close + 3;
        siblings.push({ kind: 'cdata', start, end: pos, parent });
      } else if (src.startsWith('<?', pos)) {
        const isDecl = /^<\?xml[ \t\r\n?]/.test(src.slice(pos, pos + 6));
        if (isDecl && pos !== 0 && !(pos === 1 && src.charCodeAt(0) === 0xfeff)) {
          fail('the XML declaration must come first');
        }
        siblings.push(readPi(parent));
      } else if (src.startsWith('<!DOCTYPE', pos)) {
        fail('a DOCTYPE is not supported in domain XML');
      } else if (src.startsWith('</', pos)) {
        const start = pos;
        pos += 2;
        const name = matchAt(NAME) ?? fail('expected an element name after "</"');
        matchAt(SPACE);
        expect('>', `">" to close </${name}`);
        const open = stack.pop();
        if (!open) fail(`</${name}> has no matching start tag`, start);
        if (open.name !== name) fail(`</${name}> does not match <${open.name}>`, start);
        open.contentEnd = start;
        open.end = pos;
      } else {
        if (!parent && root) fail('only one root element is allowed');
        const el = readStartTag(parent);
        siblings.push(el);
        if (!parent) root = el;
        if (!el.selfClosing) {
          if (stack.length >= MAX_DEPTH) fail(`elements are nested more than ${MAX_DEPTH} deep`, el.start);
          stack.push(el);
        }
      }
    } else {
      const start = pos;
      const next = src.indexOf('<', pos);
      pos = next < 0 ? src.length : next;
      if (!parent && src.slice(start, pos).replace(/^\uFEFF/, '').trim() !== '') {
        fail('text is not allowed outside the root element', start);
      }
      checkText(start, pos);
      siblings.push({ kind: 'text', start, end: pos, parent });
    }
  }
  const unclosed = stack.pop();
  if (unclosed) fail(`<${unclosed.name}> is not closed`, unclosed.start);
  if (!root) fail('no root element');
  return { source: src, root: root as XmlElement, nodes };
}

// ---- navigation helpers -------------------------------------------------

export const localName = (el: XmlElement): string => el.name.slice(el.name.indexOf(':') + 1);
export const prefixOf = (el: XmlElement): string => {
  const i = el.name.indexOf(':');
  return i < 0 ? '' : el.name.slice(0, i);
};

export function attr(el: XmlElement, name: string): string | undefined {
  return el.attributes.find((a) => a.name === name)?.value;
}

export function childElements(el: XmlElement, name?: string): XmlElement[] {
  return el.children.filter((c): c is XmlElement => c.kind === 'element' && (name === undefined || c.name === name));
}

export function firstChild(el: XmlElement, name: string): XmlElement | undefined {
  return childElements(el, name)[0];
}

/** The character data of an element and its descendants: text decoded, CDATA as is, comments and PIs left out. */
export function textContent(src: string, el: XmlElement): string {
  let out = '';
  for (const c of el.children) {
    if (c.kind === 'text') out += decodeEntities(src.slice(c.start, c.end));
    else if (c.kind === 'cdata') out += src.slice(c.start + '<![CDATA['.length, c.end - ']]>'.length);
    else if (c.kind === 'element') out += textContent(src, c);
  }
  return out;
}

/** The namespace URI an element's prefix is bound to (or the default namespace). */
export function namespaceOf(el: XmlElement): string {
  const prefix = prefixOf(el);
  const decl = prefix ? `xmlns:${prefix}` : 'xmlns';
  for (let e: XmlElement | undefined = el; e; e = e.parent) {
    const v = attr(e, decl);
    if (v !== undefined) return v;
  }
  return '';
}

/** The whitespace that starts the line `offset` is on, if only whitespace precedes it there. */
export function indentBefore(src: string, offset: number): string | undefined {
  const lineStart = src.lastIndexOf('\n', offset - 1) + 1;
  const lead = src.slice(lineStart, offset);
  return /^[ \t]*$/.test(lead) ? lead : undefined;
}

// ---- splicing -----------------------------------------------------------

export interface Splice {
  start: number;
  end: number;
  text: string;
}

/** Apply non-overlapping replacements to `src`. */
export function applySplices(src: string, splices: readonly Splice[]): string {
  const sorted = [...splices].sort((a, b) => a.start - b.start || a.end - b.end);
  let out = '';
  let pos = 0;
  for (const s of sorted) {
    if (s.start < pos) throw new Error(`overlapping edits at offset ${s.start}`);
    out += src.slice(pos, s.start) + s.text;
    pos = s.end;
  }
  return out + src.slice(pos);
}
