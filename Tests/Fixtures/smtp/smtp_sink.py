"""A real SMTP server for the magic-code tests (aiosmtpd): listens on a free loopback port,
writes that port to <dir>/port, and each message it accepts to <dir>/NNNNNN.eml (the
recipients on an X-Rcpt line, then the message as received). With --refuse it answers
every message 554, as a server that will not take mail. With --starttls CERT KEY it offers
STARTTLS with that certificate and refuses mail sent before it."""
import asyncio
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, folder, refuse):
        self.folder = folder
        self.refuse = refuse
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return "554 5.7.1 message refused"
        self.count += 1
        path = os.path.join(self.folder, "%06d.eml" % self.count)
        data = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        with open(path + ".tmp", "wb") as f:
            f.write(("X-Rcpt: %s\r\n" % ",".join(envelope.rcpt_tos)).encode() + data)
        os.rename(path + ".tmp", path)
        return "250 OK"


async def main():
    folder = sys.argv[1]
    sink = Sink(folder, "--refuse" in sys.argv)
    loop = asyncio.get_running_loop()
    tls = None
    if "--starttls" in sys.argv:
        i = sys.argv.index("--starttls")
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(sys.argv[i + 1], sys.argv[i + 2])
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="127.0.0.1", tls_context=tls, require_starttls=tls is not None), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with open(os.path.join(folder, "port.tmp"), "w") as f:
        f.write(str(port))
    os.rename(os.path.join(folder, "port.tmp"), os.path.join(folder, "port"))
    await asyncio.Event().wait()


asyncio.run(main())
