#!/usr/bin/python3
"""Parse one RFC 5322 message with Python's email package (an independent MIME parser)
and print what a mail client would see, as one JSON object on stdout:

  {"headers": {"from": ..., "to": ..., "subject": ..., "date": ..., "message-id": ...,
               "mime-version": ...},          # decoded (RFC 2047) by email.policy.default
   "content_type": "multipart/mixed", "defects": [...],   # every defect of every part
   "crlf_only": true, "max_line": 76, "eight_bit": false,
   "parts": [{"content_type": ..., "cte": ..., "filename": ..., "disposition": ...,
              "text": ... (text/* parts, decoded, CRLF made LF) | "base64": ... (others)}]}

Usage: mime_parse.py FILE   (the C++ API unit tests call it on the messages they build).
"""
import base64
import email
import email.policy
import json
import sys


def main():
    raw = open(sys.argv[1], 'rb').read()
    lines = raw.split(b'\r\n')
    out = {
        'crlf_only': b'\n' not in raw.replace(b'\r\n', b'') and b'\r' not in raw.replace(b'\r\n', b''),
        'max_line': max(len(line) for line in lines),
        'eight_bit': any(b >= 0x80 for b in raw),
    }
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    out['headers'] = {k: str(msg[k]) for k in ('from', 'to', 'subject', 'date', 'message-id', 'mime-version')
                      if msg[k] is not None}
    out['content_type'] = msg.get_content_type()
    defects = [type(d).__name__ for d in msg.defects]
    parts = []
    for part in msg.walk():
        defects += [type(d).__name__ for d in part.defects]
        for k in part.keys():  # header defects (e.g. bad encoded words) sit on the header objects
            defects += [type(d).__name__ for d in getattr(part[k], 'defects', ())]
        if part.is_multipart():
            continue
        p = {'content_type': part.get_content_type(),
             'cte': part.get('content-transfer-encoding', ''),
             'disposition': part.get_content_disposition(),
             'filename': part.get_filename()}
        if part.get_content_maintype() == 'text':
            p['text'] = part.get_content().replace('\r\n', '\n')
        else:
            p['base64'] = base64.b64encode(part.get_payload(decode=True)).decode()
        parts.append(p)
    out['defects'] = defects
    out['parts'] = parts
    json.dump(out, sys.stdout)


if __name__ == '__main__':
    main()
