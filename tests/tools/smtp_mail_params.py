#!/usr/bin/python3
# smtp_mail_params: hand one message to an SMTP server with Python's smtplib, the way a mail
# program does (EHLO, optional STARTTLS and EHLO again, MAIL with parameters such as
# REQUIRETLS, RCPT, DATA), and print what the server answered, one line per step:
#   EHLO <1|0 REQUIRETLS offered> / MAIL <code> <text> / RCPT <code> <text> / DATA <code> <text>
# Stops after the first refused step. Exit 0 when it ran (whatever the replies), 2 on a
# connection or TLS error. Python 3.11 standard library only; loopback servers in tests.
import argparse
import smtplib
import ssl
import sys


def one_line(text):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(text.split())


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--starttls", action="store_true", help="STARTTLS before MAIL")
    p.add_argument("--cafile", help="CA that signs the server's certificate (default: no check)")
    p.add_argument("--mail-option", action="append", default=[], help='e.g. "REQUIRETLS"')
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", action="append", required=True)
    p.add_argument("--message", required=True, help="file with the message (any line ends)")
    a = p.parse_args()
    with open(a.message, "rb") as f:
        msg = f.read()
    try:
        s = smtplib.SMTP(a.host, a.port, timeout=20)
        s.ehlo("client.test")
        if a.starttls:
            ctx = ssl.create_default_context(cafile=a.cafile) if a.cafile else ssl._create_unverified_context()
            ctx.check_hostname = False
            s.starttls(context=ctx)
            s.ehlo("client.test")
        print("EHLO", 1 if s.has_extn("requiretls") else 0)
        code, text = s.mail(a.sender, a.mail_option)
        print("MAIL", code, one_line(text))
        if code != 250:
            s.quit()
            return 0
        ok = False
        for r in a.to:
            code, text = s.rcpt(r)
            print("RCPT", code, one_line(text))
            ok |= code in (250, 251)
        if ok:
            code, text = s.data(msg)
            print("DATA", code, one_line(text))
        s.quit()
    except (OSError, smtplib.SMTPException, ssl.SSLError) as e:
        print("ERROR", one_line(str(e)))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
