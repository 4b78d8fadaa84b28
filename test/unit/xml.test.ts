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

test.run();
