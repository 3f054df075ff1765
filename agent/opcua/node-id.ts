/**
 * OPC-UA node ids in the standard string forms (Part 6, 5.3.1.10), checked at config time so a
 * typo fails the config load instead of a read at 3 a.m. Pure: no node-opcua import.
 *
 *   i=2258                      numeric, namespace 0
 *   ns=2;i=42                   numeric
 *   ns=2;s=Line1.Temperature    string (everything after "s=", semicolons included)
 *   ns=2;g=09087e75-8e5e-499b-954f-f2a9603db28a   GUID
 *   ns=2;b=TWFjaGluZTE=         ByteString, base64
 *   nsu=urn:vendor:plc;s=Temp   namespace by URI, resolved against the server's NamespaceArray
 */

export type NodeIdKind = 'i' | 's' | 'g' | 'b';

export interface ParsedNodeId {
  /** Namespace index, or namespace URI (nsu= form) to resolve after connecting. */
  namespace: number | string;
  kind: NodeIdKind;
  value: string;
}

const maxStringIdLength = 4096;
const guidPattern = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const base64Pattern = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Parses a node id string; returns an error message (naming what is wrong) instead of throwing. */
export function parseNodeId(text: string): ParsedNodeId | string {
  let rest = text;
  let namespace: number | string = 0;
  const nsMatch = /^ns=([^;]*);/.exec(rest);
  const nsuMatch = /^nsu=([^;]*);/.exec(rest);
  if (nsMatch) {
    const index = nsMatch[1]!;
    if (!/^\d{1,5}$/.test(index) || Number(index) > 65535) return `namespace index must be an integer 0..65535; found "ns=${index}"`;
    namespace = Number(index);
    rest = rest.slice(nsMatch[0].length);
  } else if (nsuMatch) {
    const uri = nsuMatch[1]!;
    if (uri === '') return 'namespace URI after "nsu=" is empty';
    namespace = uri;
    rest = rest.slice(nsuMatch[0].length);
  } else if (/^nsu?=/.test(rest)) {
    return 'namespace part must end with ";" followed by i=, s=, g= or b=';
  }
  const kind = rest.slice(0, 2);
  const value = rest.slice(2);
  switch (kind) {
    case 'i=':
      if (!/^\d{1,10}$/.test(value) || Number(value) > 0xffffffff) return `numeric identifier must be an integer 0..4294967295; found "${value}"`;
      return { namespace, kind: 'i', value: String(Number(value)) };
    case 's=':
      if (value === '') return 'string identifier after "s=" is empty';
      if (value.length > maxStringIdLength) return `string identifier is longer than ${maxStringIdLength} characters`;
      return { namespace, kind: 's', value };
    case 'g=':
      if (!guidPattern.test(value)) return `GUID identifier must look like 09087e75-8e5e-499b-954f-f2a9603db28a; found "${value}"`;
      return { namespace, kind: 'g', value: value.toLowerCase() };
    case 'b=':
      if (value === '' || !base64Pattern.test(value)) return `ByteString identifier must be non-empty base64; found "${value}"`;
      return { namespace, kind: 'b', value };
    default:
      return `node id must be [ns=<index>;|nsu=<uri>;] followed by i=, s=, g= or b=; found "${text}"`;
  }
}
