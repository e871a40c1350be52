#!/usr/bin/env python3
"""Submit one message with Python's smtplib, as a mail program or a web application would:
STARTTLS (smtplib.SMTP + starttls()) or implicit TLS (smtplib.SMTP_SSL), then AUTH with
smtplib's own choice of mechanism (or --mech PLAIN/LOGIN), then sendmail().

usage: smtp_submit.py --port N --mode starttls|ssl --user U --password P --from A --to B
                      [--subject S] [--cafile CA] [--mech PLAIN|LOGIN]
Prints "ok <server reply>" and exits 0 when the message was accepted; prints the
exception (class and SMTP code/text) and exits 1 otherwise.
"""
import argparse
import smtplib
import ssl
import sys
from email.message import EmailMessage


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--mode', choices=['starttls', 'ssl'], required=True)
    ap.add_argument('--user', required=True)
    ap.add_argument('--password', required=True)
    ap.add_argument('--from', dest='sender', required=True)
    ap.add_argument('--to', required=True)
    ap.add_argument('--subject', default='smtplib test')
    ap.add_argument('--cafile')
    ap.add_argument('--mech', choices=['PLAIN', 'LOGIN'])
    a = ap.parse_args()

    ctx = ssl.create_default_context(cafile=a.cafile) if a.cafile else ssl.create_default_context()
    ctx.check_hostname = False  # the test certificate names the relay, not 127.0.0.1
    if not a.cafile:
        ctx.verify_mode = ssl.CERT_NONE
    msg = EmailMessage()
    msg['From'] = a.sender
    msg['To'] = a.to
    msg['Subject'] = a.subject
    msg.set_content('Sent by smtplib (%s).\n' % a.mode)
    try:
        if a.mode == 'ssl':
            s = smtplib.SMTP_SSL(a.host, a.port, context=ctx, timeout=20)
        else:
            s = smtplib.SMTP(a.host, a.port, timeout=20)
            s.ehlo('smtplib.test')
            s.starttls(context=ctx)
        s.ehlo('smtplib.test')
        if a.mech:
            s.user, s.password = a.user, a.password
            mech = 'auth_' + a.mech.lower()
            s.auth(a.mech, getattr(s, mech), initial_response_ok=(a.mech == 'PLAIN'))
        else:
            s.login(a.user, a.password)
        refused = s.send_message(msg)
        code, text = s.noop()
        s.quit()
    except (smtplib.SMTPException, OSError) as e:
        print('error %s %s' % (type(e).__name__, e))
        return 1
    if refused:
        print('refused %r' % refused)
        return 1
    print('ok %d' % code)
    return 0


if __name__ == '__main__':
    sys.exit(main())
