"""The pure parts of authentication: the key, credentials, the replay cache, tokens, fair use, netmasks."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wulf.auth import credential, vouch
from wulf.auth.credential import ReplayCache, request_digest
from wulf.auth.key import ClusterKey, ensure_key, load_key, new_secret, write_key
from wulf.auth.netmask import AllowList
from wulf.auth.ratelimit import RateLimiter
from wulf.auth.tokens import Token, TokenBook, new_token, token_hash
from wulf.errors import ConfigError, Unauthenticated

KEY = ClusterKey(b"k" * 32)
OTHER = ClusterKey(b"o" * 32)
NOW = 1_800_000_000.0
T0 = 1000.0  # a monotonic clock
DIGEST = request_digest("POST", "/api/v1/jobs/cancel", b'{"ids":[1]}')


def make(key: ClusterKey = KEY, when: float = NOW, digest: str = DIGEST, kind: str = credential.USER) -> str:
    return credential.encode(key, kind, 1000, 100, "node7", when, digest)


def check(text: str, now: float = NOW + 1, cache: ReplayCache | None = None, digest: str = DIGEST,
          kind: str = credential.USER, key: ClusterKey = KEY) -> credential.Credential:
    return credential.verify(key, text, kind=kind, digest=digest, now=now, ttl=60, replays=ReplayCache() if cache is None else cache)


# ---------------------------------------------------------------- the key


def test_a_new_key_file_is_private_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "cluster.key"
    key, made = ensure_key(path)
    assert made and oct(path.stat().st_mode & 0o777) == "0o600"
    again, made = ensure_key(path)
    assert not made and again.derive("credential") == key.derive("credential")
    assert key.derive("credential") != key.derive("token")
    assert "=" not in repr(key) and str(path) in repr(key)


def test_a_key_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "cluster.key"
    write_key(path)
    with pytest.raises(ConfigError, match="does not overwrite"):
        write_key(path)


def test_a_key_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cluster.key"
    write_key(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="may be read by others.*chmod 600"):
        load_key(path)


def test_a_missing_short_or_garbled_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no cluster key at .*wulf init"):
        load_key(tmp_path / "none")
    for text, why in ((b"c2hvcnQ=\n", "too short"), (b"not base64 at all!\n", "not one line of base64")):
        path = tmp_path / f"k{len(text)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, text)
        os.close(fd)
        with pytest.raises(ConfigError, match=why):
            load_key(path)
    link = tmp_path / "link"
    write_key(tmp_path / "real")
    link.symlink_to(tmp_path / "real")
    with pytest.raises(ConfigError):
        load_key(link)


def test_new_secrets_differ() -> None:
    assert new_secret() != new_secret() and len(new_secret()) == 32


# ---------------------------------------------------------------- credentials


def test_a_good_credential_says_who_where_and_when() -> None:
    cred = check(make())
    assert (cred.kind, cred.uid, cred.gid, cred.host, cred.time) == ("user", 1000, 100, "node7", NOW)
    assert len(cred.nonce) == 32


def test_a_credential_is_good_once() -> None:
    cache = ReplayCache()
    text = make()
    check(text, cache=cache)
    with pytest.raises(Unauthenticated, match="used before"):
        check(text, now=NOW + 2, cache=cache)


def test_expired_and_future_credentials_are_refused() -> None:
    with pytest.raises(Unauthenticated, match="expired .*made 61s ago on node7"):
        check(make(), now=NOW + 61)
    with pytest.raises(Unauthenticated, match="in the future .*clocks"):
        check(make(when=NOW + 120), now=NOW)
    check(make(when=NOW + 30), now=NOW)  # a little skew is fine


def test_a_credential_of_another_key_kind_or_request_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="signature does not match"):
        check(make(key=OTHER))
    with pytest.raises(Unauthenticated, match="another request"):
        check(make(digest=request_digest("POST", "/api/v1/jobs/cancel", b'{"ids":[2]}')))
    with pytest.raises(Unauthenticated, match="kind 'user', not 'agent'"):
        check(make(), kind=credential.AGENT)


def test_unsigned_and_malformed_credentials_are_refused() -> None:
    text = make()
    body = text.split(".")[1]
    for bad in ("", "hello", "wulf1..", f"wulf1.{body}", f"wulf1.{body}.", f"wulf2.{body}.x", text + ".x",
                "x" * 5000):
        with pytest.raises(Unauthenticated):
            check(bad)


def test_a_forged_credential_with_a_well_formed_payload_is_refused() -> None:
    import base64
    import json

    payload = {"k": "user", "u": 0, "g": 0, "h": "evil", "t": NOW, "n": "00" * 16, "d": DIGEST}
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    real = make()
    with pytest.raises(Unauthenticated, match="signature"):
        check(f"wulf1.{body}.{real.split('.')[2]}")


def test_a_signed_payload_of_the_wrong_shape_is_refused() -> None:
    import base64
    import hashlib
    import hmac

    def signed(body: bytes) -> str:
        b = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
        mac = hmac.new(KEY.derive("credential"), f"wulf1.{b}".encode(), hashlib.sha256).digest()
        return f"wulf1.{b}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    for body in (b"[1]", b"not json", b'{"k": "user"}', b'{"k":"user","u":"0","g":0,"h":"","t":1,"n":"","d":""}',
                 b'{"k":"user","u":true,"g":0,"h":"","t":1,"n":"","d":""}'):
        with pytest.raises(Unauthenticated, match="malformed"):
            check(signed(body))


@settings(max_examples=200)
@given(st.data())
def test_any_change_to_a_credential_is_refused(data: st.DataObject) -> None:
    text = make()
    i = data.draw(st.integers(0, len(text) - 1))
    c = data.draw(st.characters(codec="ascii").filter(lambda ch: ch != text[i]))
    altered = text[:i] + c + text[i + 1:]
    try:
        cred = check(altered)
    except Unauthenticated:
        return
    # base64 without padding has spare bits: a change there may decode to the same bytes
    assert cred == check(text)


def test_the_replay_cache_forgets_what_has_expired() -> None:
    cache = ReplayCache()
    assert cache.add("a", NOW + 60, NOW)
    assert not cache.add("a", NOW + 60, NOW + 30)
    assert cache.add("b", NOW + 100, NOW + 30)
    assert cache.add("a", NOW + 120, NOW + 61)  # "a" has expired: no credential with it is good any more
    assert len(cache) == 2
    cache.add("c", NOW + 200, NOW + 150)
    assert len(cache) == 1  # a and b went at the sweep


def test_the_digest_covers_method_target_and_body() -> None:
    d = request_digest("GET", "/api/v1/status?all=1", b"")
    assert d != request_digest("GET", "/api/v1/status?all=0", b"")
    assert d != request_digest("POST", "/api/v1/status?all=1", b"")
    assert request_digest("post", "/x", b"1") == request_digest("POST", "/x", b"1") != request_digest("POST", "/x", b"2")


# ---------------------------------------------------------------- the agent's vouching


def test_the_agent_vouches_for_the_peer_for_the_request_named() -> None:
    line = f"CRED {DIGEST}\n".encode()
    out = vouch.answer(KEY, "node7", line, 1234, 55, NOW)
    assert out.startswith(b"OK ")
    cred = check(out[3:].decode().strip())
    assert (cred.uid, cred.gid, cred.host) == (1234, 55, "node7")
    for bad in (b"CRED 123\n", b"HELLO\n", b"CRED " + b"g" * 64 + b"\n", b"\xff\xfe\n"):
        assert vouch.answer(KEY, "node7", bad, 0, 0, NOW).startswith(b"ERR ")


def test_the_vouch_service_names_the_connecting_process(tmp_path: Path) -> None:
    server = vouch.serve(tmp_path / "agent.sock", KEY, "node7")
    assert server is not None
    try:
        assert oct((tmp_path / "agent.sock").stat().st_mode & 0o777) == "0o666"
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(tmp_path / "agent.sock"))
            s.sendall(f"CRED {DIGEST}\n".encode())
            reply = s.makefile("rb").readline()
        cred = check(reply[3:].decode().strip(), now=credential_time(reply))
        assert (cred.uid, cred.gid) == (os.geteuid(), os.getegid())
        assert vouch.serve(tmp_path / "agent.sock", KEY, "node7") is None  # one agent per socket
    finally:
        server.close()
    assert not (tmp_path / "agent.sock").exists()


def credential_time(reply: bytes) -> float:
    return credential.decode(KEY, reply[3:].decode().strip()).time + 1


def test_the_vouch_service_is_not_held_up_by_a_silent_client(tmp_path: Path) -> None:
    server = vouch.serve(tmp_path / "agent.sock", KEY, "node7")
    assert server is not None
    silent = socket.socket(socket.AF_UNIX)
    try:
        silent.connect(str(tmp_path / "agent.sock"))
        done = threading.Event()

        def ask() -> None:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(tmp_path / "agent.sock"))
                s.sendall(f"CRED {DIGEST}\n".encode())
                if s.makefile("rb").readline().startswith(b"OK "):
                    done.set()

        t = threading.Thread(target=ask)
        t.start()
        assert done.wait(3)
        t.join()
    finally:
        silent.close()
        server.close()


# ---------------------------------------------------------------- tokens


def test_tokens_are_random_and_found_by_hash_until_they_expire() -> None:
    a, b = new_token(), new_token()
    assert a != b and a.startswith("wulf_") and len(a) > 40
    book = TokenBook()
    book.add(Token(book.next_id(), "alice", 1000, 100, "ci", token_hash(a), NOW, expires=NOW + 10))
    assert book.find(a, NOW).user == "alice"  # type: ignore[union-attr]
    assert book.find(b, NOW) is None
    assert book.find(a, NOW + 10) is None
    assert book.next_id() == 2
    t = book.remove(1)
    assert t is not None and "hash" not in t.public() and book.find(a, NOW) is None
    assert TokenBook([t.record()]).find(a, NOW) is not None


# ---------------------------------------------------------------- fair use


def test_a_bucket_allows_a_burst_then_the_rate() -> None:
    rl = RateLimiter(rate=10, burst=5)
    assert [rl.take("alice", T0) for _ in range(5)] == [0.0] * 5
    assert rl.take("alice", T0) == pytest.approx(0.1)
    assert rl.take("bob", T0) == 0.0  # another user's budget is their own
    assert rl.take("alice", T0 + 0.1) == 0.0
    assert rl.take("alice", T0 + 0.1) > 0
    assert rl.take("alice", T0 + 100) == 0.0  # it refills, up to the burst


def test_a_flood_gets_the_rate_and_no_more() -> None:
    rl = RateLimiter(rate=20, burst=10)
    t, allowed = T0, 0
    for _ in range(10_000):  # 1000 requests a second for 10 s
        t += 0.001
        allowed += rl.take("flood", t) == 0.0
    assert 10 + 200 - 2 <= allowed <= 10 + 200 + 1


def test_no_limit_when_the_rate_is_zero_and_idle_buckets_are_forgotten() -> None:
    assert not RateLimiter(0, 5).enabled and RateLimiter(0, 5).take("x", T0) == 0.0
    rl = RateLimiter(rate=10, burst=5)
    for i in range(100):
        rl.take(f"user{i}", T0)
    rl.take("late", T0 + 10)
    assert len(rl) == 1


# ---------------------------------------------------------------- the network allow-list


def test_the_allow_list() -> None:
    allow = AllowList(["127.0.0.0/8", "10.1.0.0/16", "::1", "fd00::/8"])
    assert allow.allows("127.0.0.1") and allow.allows("10.1.2.3") and allow.allows("::1")
    assert allow.allows("::ffff:10.1.9.9") and allow.allows("fd00::7")
    assert not allow.allows("10.2.0.1") and not allow.allows("192.168.1.1") and not allow.allows("fe80::1")
    assert not allow.allows("testclient") and not allow.allows("")
    assert AllowList(["0.0.0.0/0", "::/0"]).allows("203.0.113.9")
    assert not AllowList([]).allows("127.0.0.1")
    with pytest.raises(ConfigError, match="not a network"):
        AllowList(["10.0.0.0/33"])
