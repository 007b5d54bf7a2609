"""The gateway's SSH transport: paramiko's, with its algorithms, a faster cipher asked for
where the client can do it, and the protocol kept while keys change.

paramiko answers channel opens and requests on its own thread at once, even between its
KEXINIT and NEWKEYS, where RFC 4253 (section 7.1) allows only transport and key exchange
messages; and on that thread a wait for the key change to end would never end, as the
change needs that very thread. Here such answers wait for the new keys instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import paramiko
from paramiko.common import (
    MSG_CHANNEL_DATA,
    MSG_CHANNEL_EXTENDED_DATA,
    MSG_CHANNEL_REQUEST,
    MSG_USERAUTH_SUCCESS,
)

# AES-GCM first: in paramiko it moves about 1.6x the bytes of AES-CTR with an HMAC per
# packet (bench/ssh_gateway.py). A client picks the first of its own list the gateway
# offers, and OpenSSH lists CTR first: the gateway then changes keys once more, offering
# only the GCM ciphers the client listed (prefer_fast_cipher), and `berth config-ssh`
# puts GCM first. CBC, 3DES and the MD5 and truncated MACs are left out.
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
CIPHERS = (*FAST_CIPHERS, "aes128-ctr", "aes256-ctr")
MACS = (
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
    "hmac-sha1",
)
FIRST_CHANNEL_MESSAGE = 50  # below: transport and key exchange messages
KEY_CHANGE_SECONDS = 30
MAX_HELD = 1000  # answers held while keys change; a client asking more is cut off


def _answer_then_start(channel: paramiko.Channel, m) -> None:
    """paramiko answers a channel request after asking the server about it: what the
    request started (a session's thread) begins only once that answer is on its way,
    or a quick command's exit and close could reach the client first, which then
    takes the request for refused."""
    paramiko.Channel._handle_request(channel, m)
    start = channel.transport.starts.pop(channel.get_id(), None)
    if start is not None:
        start()


def _feed_within_window(channel: paramiko.Channel, m) -> None:
    """paramiko buffers whatever a client sends on a channel, window or not: a client
    that sends past the window it was given ends its connection instead."""
    if _past_the_window(channel, m, extended=False):
        return
    paramiko.Channel._feed(channel, m)


def _feed_extended_within_window(channel: paramiko.Channel, m) -> None:
    if _past_the_window(channel, m, extended=True):
        return
    paramiko.Channel._feed_extended(channel, m)


class GatewayTransport(paramiko.Transport):
    """A server transport that keeps the protocol while keys change, starts what a
    channel request asked for only after answering it, holds each client to its channel
    windows, and remembers which ciphers the client offered (paramiko keeps only the one
    agreed)."""

    def __init__(self, sock, **options):
        super().__init__(sock, **options)
        security = self.get_security_options()
        security.ciphers, security.digests = CIPHERS, MACS
        self.client_ciphers: tuple[str, ...] = ()  # the client's offer, both directions
        self.starts: dict[int, Callable[[], None]] = {}  # by channel, until answered
        self._held: list[paramiko.Message] = []  # answers waiting for the new keys
        self.logged_in = threading.Event()  # USERAUTH_SUCCESS is on its way
        # Reentrant: the transport's own thread looks and sends under it, and paramiko
        # takes it again inside (it only acquires and releases it).
        self.clear_to_send_lock = threading.RLock()

    # --- key changes ---------------------------------------------------------------------

    def _really_parse_kex_init(self, m, ignore_first_byte=False):
        parsed = super()._really_parse_kex_init(m, ignore_first_byte)
        if self.server_mode and not ignore_first_byte:  # the peer's offer, not our own
            both = set(parsed["server_encrypt_algo_list"])
            self.client_ciphers = tuple(c for c in parsed["client_encrypt_algo_list"] if c in both)
        return parsed

    def _send_message(self, data):
        if threading.current_thread() is not self:  # a session's bytes: no copy to look at
            super()._send_message(data)
            return
        kind = data.asbytes()[0]
        if kind < FIRST_CHANNEL_MESSAGE:
            super()._send_message(data)
            return
        # The look at the key change and the send are one step: a KEXINIT of another
        # thread comes before both or after both.
        with self.clear_to_send_lock:
            if not self.clear_to_send.is_set():
                if len(self._held) >= MAX_HELD:
                    raise paramiko.SSHException("too many answers held while keys change")
                self._held.append(data)
                return
            super()._send_message(data)
        if kind == MSG_USERAUTH_SUCCESS:
            self.logged_in.set()

    def _send_user_message(self, data):
        if threading.current_thread() is self:
            self._send_message(data)  # held while keys change
        else:
            super()._send_user_message(data)

    def _parse_newkeys(self, m):
        # The held answers go out before any other thread may send: paramiko lets others
        # send as soon as it has the new keys.
        with self.clear_to_send_lock:
            super()._parse_newkeys(m)
            held, self._held = self._held, []
            for data in held:
                super()._send_message(data)

    def prefer_fast_cipher(self) -> bool:
        """When the client picked a slower cipher but can do AES-GCM both ways, change
        keys once more, offering only the GCM ciphers it listed; True when it did. Either
        side may change keys once logged in (RFC 4253, section 9); the session goes on.
        A client that does not take part within KEY_CHANGE_SECONDS is dropped."""
        fast = tuple(c for c in FAST_CIPHERS if c in self.client_ciphers)
        if not fast or self.remote_cipher in FAST_CIPHERS:
            return False
        # paramiko counts a login before it has said so: OpenSSH takes no key change
        # before it has read that.
        if not self.logged_in.wait(KEY_CHANGE_SECONDS):
            raise paramiko.SSHException("the login was not answered")
        with self.clear_to_send_lock:
            if not self.clear_to_send.is_set() or self.in_kex:
                return False  # the client is changing keys itself
            self.get_security_options().ciphers = fast
            self._send_kex_init()
        # Not paramiko's completion_event: a client's stray global reply also sets it.
        deadline = time.monotonic() + KEY_CHANGE_SECONDS
        while not (self.clear_to_send.is_set() and not self.in_kex):
            if not self.active:
                raise paramiko.SSHException("the connection ended while keys changed")
            if time.monotonic() > deadline:
                raise paramiko.SSHException("the client did not change keys")
            self.clear_to_send.wait(0.05)
        return True

    # --- channels ------------------------------------------------------------------------

    def start_after_answer(self, channel: paramiko.Channel, start: Callable[[], None]) -> None:
        self.starts[channel.get_id()] = start

    _channel_handler_table = {
        **paramiko.Transport._channel_handler_table,
        MSG_CHANNEL_REQUEST: _answer_then_start,
        MSG_CHANNEL_DATA: _feed_within_window,
        MSG_CHANNEL_EXTENDED_DATA: _feed_extended_within_window,
    }


def _past_the_window(channel: paramiko.Channel, m, extended: bool) -> bool:
    start = m.packet.tell()
    if extended:
        m.get_int()  # the data type code
    size = m.get_int()
    m.packet.seek(start)
    buffered = len(channel.in_buffer) + len(channel.in_stderr_buffer)
    if buffered + size <= channel.in_window_size:
        return False
    channel.transport._log(paramiko.common.INFO, "the client sent past a channel's window")
    channel.transport.close()
    return True
