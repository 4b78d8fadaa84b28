// xml.ts against an independent parser: for every domain fixture and
// template, the element tree it reads (names, decoded attribute values, text,
// comments, CDATA) must equal what fast-xml-parser reads. And malformed input
// must be refused with a line and column.
import { readdirSync, readFileSync } from 'node:fs';
import { XMLParser } from 'fast-xml-parser';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeEntities, parseXml, XmlSyntaxError, type XmlNode } from '../../src/xml.ts';

const fixtures = new URL('../fixtures/domains/', import.meta.url);
const samples: Array<[string, string]> = readdirSync(fixtures)
  .filter((f) => f.endsWith('.xml'))
  .map((f) => [f, readFileSync(new URL(f, fixtures), 'utf8')]);

type Tree = { el: string; attrs: Record<string, string>; children: Tree[] } | { text: string } | { comment: string } | { cdata: string };

function ours(source: string, nodes: XmlNode[]): Tree[] {
  const out: Tree[] = [];
  for (const n of nodes) {
    const raw = source.slice(n.start, n.end);
    if (n.kind === 'element') {
      out.push({ el: n.name, attrs: Object.fromEntries(n.attributes.map((a) => [a.name, a.value])), children: ours(source, n.children) });
    } else if (n.kind === 'text') {
      if (raw.trim()) out.push({ text: decodeEntities(raw.replace(/\r\n/g, '\n')) });
    } else if (n.kind === 'comment') {
      out.push({ comment: raw.slice(4, -3) });
    } else if (n.kind === 'cdata') {
      out.push({ cdata: raw.slice(9, -3) });
    }
  }
  return out;
}

const oracle = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  trimValues: false,
  parseTagValue: false,
  parseAttributeValue: false,
  htmlEntities: true,
  commentPropName: '#comment',
  cdataPropName: '#cdata',
  ignoreDeclaration: true,
  ignorePiTags: true,
});

function theirs(nodes: Array<Record<string, unknown>>): Tree[] {
  const out: Tree[] = [];
  for (const n of nodes) {
    const attrs = (n[':@'] ?? {}) as Record<string, string>;
    for (const [key, value] of Object.entries(n)) {
      if (key === ':@') continue;
      if (key === '#text') {
        if (String(value).trim()) out.push({ text: String(value).replace(/\r\n/g, '\n') });
      } else if (key === '#comment') {
        out.push({ comment: String((value as Array<{ '#text': string }>)[0]?.['#text'] ?? '') });
      } else if (key === '#cdata') {
        out.push({ cdata: String((value as Array<{ '#text': string }>)[0]?.['#text'] ?? '') });
      } else {
        out.push({ el: key, attrs, children: theirs(value as Array<Record<string, unknown>>) });
      }
    }
  }
  return out;
}

for (const [name, xml] of samples) {
  test(`reads ${name} as fast-xml-parser does`, () => {
    const doc = parseXml(xml);
    assert.equal(ours(xml, [doc.root]), theirs(oracle.parse(xml)).filter((t) => 'el' in t));
  });
}

test('malformed XML is refused with a position', () => {
  const bad: Array<[string, RegExp]> = [
    ['<domain><name>x</domain>', /line 1 column \d+: .*name/],
    ['<domain a="1" a="2"/>', /duplicate|twice/i],
    ['<domain a=1/>', /quote/i],
    ['<domain>&bogus;</domain>', /entity|reference/i],
    ['<!DOCTYPE domain [<!ENTITY x "y">]><domain/>', /DOCTYPE/],
    ['<domain/><other/>', /.+/],
    ['', /no root element/],
  ];
  for (const [xml, pattern] of bad) {
    try {
      parseXml(xml);
      assert.unreachable(`accepted ${JSON.stringify(xml)}`);
    } catch (err) {
      assert.instance(err, XmlSyntaxError, `${JSON.stringify(xml)}: ${String(err)}`);
      assert.match((err as Error).message, pattern);
    }
  }
});

test('no entity is expanded but the five predefined ones and character references, each once', () => {
  const doc = '<domain a="&#38;lt;">&#38;amp;&amp;lt;</domain>';
  const root = parseXml(doc).root;
  assert.is(root.attributes[0]?.value, '&lt;', 'a reference that spells an entity stays text');
  assert.is(decodeEntities(doc.slice(root.startTagEnd, root.contentEnd)), '&amp;&lt;');
  // A DTD (where entities would be declared) is refused wherever it appears, before anything is expanded.
  const laughs = `<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">${Array.from({ length: 9 }, (_, i) => `<!ENTITY a${i + 1} "${`&a${i || ''};`.repeat(10)}">`).join('')}]><d>&a9;</d>`;
  for (const xml of [laughs, '<!DOCTYPE d SYSTEM "file:///etc/shadow"><d/>', '<d><!DOCTYPE d></d>', '<d/><!DOCTYPE d>', '<!ENTITY x "y"><d/>']) {
    assert.throws(() => parseXml(xml), (e: unknown) => e instanceof XmlSyntaxError && /DOCTYPE|element name/.test(e.message), xml);
  }
});

test('characters XML does not allow are refused, raw or as references, with their position', () => {
  const refused: Array<[string, RegExp]> = [
    ['<d>a\0b</d>', /line 1 column 5: character U\+0000 is not allowed in XML/],
    ['<d>\n\x1b[31m</d>', /line 2 column 1: character U\+001B/],
    ['<d a="\x7f\x01"/>', /character U\+0001/],
    ['<d>\uFFFE</d>', /character U\+FFFE/],
    ['<d>\uD800</d>', /character U\+D800/],
    ['<d>&#0;</d>', /bad character reference &#0;|character reference &#0; is U\+0000/],
    ['<d>&#x1b;</d>', /character reference &#x1b; is U\+001B, which XML does not allow/],
    ['<d a="&#7;"/>', /character reference &#7; is U\+0007/],
    ['<d>&#xD800;</d>', /&#xD800; is U\+D800/],
    ['<d>&#xFFFF;</d>', /&#xFFFF; is U\+FFFF/],
    ['<d>&#x110000;</d>', /bad character reference &#x110000;/],
  ];
  for (const [xml, pattern] of refused) {
    assert.throws(() => parseXml(xml), (e: unknown) => e instanceof XmlSyntaxError && pattern.test(e.message), JSON.stringify(xml));
  }
  // Allowed: tab, CR, LF, a BOM, the last code points of each range, astral characters.
  const ok = '\uFEFF<d a="\t&#9;&#xD7FF;">\r\n\uE000\uFFFD\u{10FFFF}\u{1F600}&#x10FFFF;</d>';
  assert.is(parseXml(ok).root.name, 'd');
});

test('nesting: 256 levels are read, a 257th is refused (libxml2, and so libvirt, stops there too)', () => {
  const nest = (n: number) => `${'<a>'.repeat(n)}${'</a>'.repeat(n)}`;
  let depth = 0;
  for (let el = parseXml(nest(256)).root; el; el = el.children[0] as typeof el) depth++;
  assert.is(depth, 256);
  assert.throws(() => parseXml(nest(257)), /line 1 column 769: elements are nested more than 256 deep/);
  assert.throws(() => parseXml(nest(100_000)), /nested more than 256 deep/);
  // Self-closing elements do not nest.
  assert.is(parseXml(`${'<a>'.repeat(256)}<b/><b/>${'</a>'.repeat(256)}`).root.name, 'a');
});

test('many attributes: all read, a duplicate found wherever it is', () => {
  const attrs = Array.from({ length: 5000 }, (_, i) => `a${i}='${i}'`).join(' ');
  const root = parseXml(`<d ${attrs}/>`).root;
  assert.is(root.attributes.length, 5000);
  assert.is(root.attributes[4999]?.value, '4999');
  assert.throws(() => parseXml(`<d ${attrs} a4321='x'/>`), /attribute a4321 appears twice in <d>/);
});

test.run();
